// SPDX-License-Identifier: Apache-2.0
// `fwdepot backup` and `fwdepot restore`: a consistent copy of a data directory taken while the
// server runs, and its verified return into a fresh directory.
//
// A backup is a directory (mode 0700: it holds the private keys):
//   backup.json    what it holds: format, time, counts
//   fwdepot.db     the catalog, copied by SQLite's online backup API in one snapshot
//   blobs/         the payload of every image in that snapshot, hard-linked when the backup is
//                  on the data directory's filesystem (blobs are immutable), copied otherwise
//   fwdepot.toml, pki/, keys/   the data directory's configuration, PKI and signing keys
// It is built under OUT.partial and renamed to OUT only once complete and verified.
#include "commands.hpp"
#include "config.hpp"
#include "file_io.hpp"
#include "fwdepot/storage/blob_store.hpp"
#include "fwdepot/storage/sqlite_catalog.hpp"

#include <unistd.h>

#include <ctime>
#include <iostream>

namespace fwdepot::cli {
namespace {

namespace fs = std::filesystem;
using storage::ImageRecord;

constexpr int kFormat = 1;

Error io_error(const fs::path& p, const std::string& what) {
  return Error(storage::error::io_error, p.string() + ": " + what);
}

// The layout inside a backup or a fresh data directory: blobs by digest, as FileBlobStore does.
fs::path blob_path(const fs::path& root, const Sha256Digest& d) {
  const std::string hex = hex_encode(d);
  return root / "blobs" / "sha256" / hex.substr(0, 2) / hex;
}

// Size and digest must be the catalog's: a backup never carries (or restores) a damaged blob.
result<void> verify_blob(const fs::path& file, const ImageRecord& image) {
  auto digest = hash_file(file);
  if (!digest) {
    return digest.error();
  }
  if (digest->size_bytes != image.size_bytes || digest->sha256 != image.sha256) {
    return Error(storage::error::corrupt, "image " + std::to_string(image.id) + " (" + image.name +
                                              " " + image.version + "): its payload " +
                                              file.string() + " does not match its SHA-256");
  }
  return {};
}

// Copies a file or a whole directory tree with its permissions; `link` hard-links files
// instead where the filesystem allows it.
result<std::uint64_t> copy_tree(const fs::path& from, const fs::path& to, bool link) {
  std::error_code ec;
  if (fs::is_directory(from, ec)) {
    fs::create_directories(to, ec);
    std::uint64_t linked = 0;
    for (const auto& entry : fs::directory_iterator(from, ec)) {
      auto r = copy_tree(entry.path(), to / entry.path().filename(), link);
      if (!r) {
        return r.error();
      }
      linked += *r;
    }
    if (ec) {
      return io_error(from, ec.message());
    }
    // Once filled: a read-only directory (0500) must not stop its own copy.
    fs::permissions(to, fs::status(from).permissions(), ec);
    return linked;
  }
  fs::create_directories(to.parent_path(), ec);
  if (link) {
    fs::create_hard_link(from, to, ec);
    if (!ec) {
      return 1;
    }
  }
  fs::copy_file(from, to, fs::copy_options::none, ec);
  if (ec) {
    return io_error(to, "cannot copy from " + from.string() + ": " + ec.message());
  }
  fs::permissions(to, fs::status(from).permissions(), ec);
  return 0;
}

struct Snapshot {
  std::vector<ImageRecord> images;
  std::uint64_t devices = 0;
};

// Opens a catalog file, checks its integrity and lists what it holds.
result<Snapshot> inspect(const fs::path& db) {
  auto catalog = storage::SqliteCatalog::open(db);
  if (!catalog) {
    return Error(catalog.error().code, db.string() + ": " + catalog.error().message());
  }
  if (auto r = (*catalog)->check_integrity(); !r) {
    return Error(r.error().code, db.string() + ": " + r.error().message());
  }
  Snapshot s;
  auto images = (*catalog)->list_images();
  if (!images) {
    return images.error();
  }
  s.images = std::move(*images);
  storage::DeviceQuery q;
  q.limit = 1;
  auto devices = (*catalog)->list_devices(q);
  if (!devices) {
    return devices.error();
  }
  s.devices = devices->total;
  return s;
}

// A fresh directory for the result, or an error if anything is in the way.
result<void> make_private_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    return Error(core::error::invalid_argument,
                 dir.string() + " exists (a previous run left it? remove it first)");
  }
  if (!fs::create_directories(dir, ec) || ec) {
    return io_error(dir, "cannot create: " + ec.message());
  }
  fs::permissions(dir, fs::perms::owner_all, ec);
  return {};
}

// Everything written so far reaches the disk before the rename makes it visible.
result<void> publish(const fs::path& staging, const fs::path& final_dir) {
  ::sync();
  std::error_code ec;
  fs::rename(staging, final_dir, ec);
  if (ec) {
    return io_error(final_dir, "cannot rename from " + staging.string() + ": " + ec.message());
  }
  ::sync();
  return {};
}

// Fills `staging` with a backup of `data_dir`; returns the summary.
result<std::string> backup_into(const fs::path& data_dir, const Config* config,
                                const fs::path& staging) {
  std::error_code ec;
  if (!fs::is_regular_file(config->database, ec)) {
    // Never create an empty catalog and call it a backup (a wrong --data, a missing variable).
    return Error(core::error::invalid_argument, config->database.string() + " does not exist");
  }
  {
    auto live = storage::SqliteCatalog::open(config->database);
    if (!live) {
      return Error(live.error().code, config->database.string() + ": " + live.error().message());
    }
    if (auto r = (*live)->backup_to(staging / "fwdepot.db"); !r) {
      return r.error();
    }
  }
  auto snapshot = inspect(staging / "fwdepot.db");
  if (!snapshot) {
    return snapshot.error();
  }
  auto blobs = storage::FileBlobStore::open(config->blobs);
  if (!blobs) {
    return blobs.error();
  }
  std::uint64_t bytes = 0;
  std::uint64_t linked = 0;
  for (const auto& image : snapshot->images) {
    const fs::path to = blob_path(staging, image.sha256);
    if (fs::exists(to, ec)) {
      continue;  // another image with the same payload
    }
    const fs::path from = (*blobs)->path_of(image.sha256);
    if (!fs::exists(from, ec)) {
      // Deleted after the snapshot was taken: the caller takes a new snapshot.
      return Error(storage::error::not_found,
                   "image " + std::to_string(image.id) + " was deleted while the backup ran");
    }
    auto copied = copy_tree(from, to, true);
    if (!copied) {
      return copied.error();
    }
    if (auto v = verify_blob(to, image); !v) {
      return v.error();
    }
    linked += *copied;
    bytes += image.size_bytes;
  }
  for (const char* name : {"fwdepot.toml", "pki", "keys"}) {
    if (fs::exists(data_dir / name, ec)) {
      if (auto r = copy_tree(data_dir / name, staging / name, false); !r) {
        return r.error();
      }
    }
  }
  const std::string manifest = "{\"format\":" + std::to_string(kFormat) +
                               ",\"created_at\":" + std::to_string(std::time(nullptr)) +
                               ",\"images\":" + std::to_string(snapshot->images.size()) +
                               ",\"devices\":" + std::to_string(snapshot->devices) +
                               ",\"blob_bytes\":" + std::to_string(bytes) + "}\n";
  if (auto r = write_new_file(staging / "backup.json", manifest, kPrivateFileMode); !r) {
    return r.error();
  }
  return std::to_string(snapshot->images.size()) + " images, " + std::to_string(snapshot->devices) +
         " devices, " + std::to_string(bytes) + " payload bytes (" + std::to_string(linked) +
         " blobs hard-linked)";
}

// "dir/" and "dir" name the same directory; the staging name goes beside it, not inside.
fs::path without_trailing_slash(const fs::path& p) {
  fs::path n = p.lexically_normal();
  return n.has_filename() ? n : n.parent_path();
}

result<std::string> backup(const fs::path& data_dir, const fs::path& out_arg) {
  auto config = load_config(data_dir);
  if (!config) {
    return config.error();
  }
  const fs::path out = without_trailing_slash(out_arg);
  std::error_code ec;
  if (fs::exists(out, ec)) {
    return Error(core::error::invalid_argument, out.string() + " exists");
  }
  const fs::path staging = out.string() + ".partial";
  // An image deleted between the snapshot and the copy of its payload makes that snapshot
  // uncopyable: take a new one (deletions are rare; three tries are plenty).
  result<std::string> summary = Error(storage::error::busy, "no attempt");
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (auto r = make_private_dir(staging); !r) {
      return r.error();
    }
    summary = backup_into(data_dir, &*config, staging);
    if (summary) {
      if (auto r = publish(staging, out); !r) {
        summary = r.error();
      }
    }
    if (summary) {
      break;
    }
    fs::remove_all(staging, ec);  // a failed backup leaves nothing behind
    if (summary.error().code != storage::error::not_found) {
      break;
    }
  }
  if (!summary) {
    return summary.error();
  }
  return "backup: " + *summary + " in " + out.string();
}

result<std::string> restore(const fs::path& from, const fs::path& data_dir_arg) {
  const fs::path data_dir = without_trailing_slash(data_dir_arg);
  auto manifest = read_small_file(from / "backup.json");
  if (!manifest) {
    return Error(manifest.error().code,
                 from.string() + " is not an fwdepot backup (" + manifest.error().message() + ")");
  }
  if (manifest->find("\"format\":" + std::to_string(kFormat) + ",") == std::string::npos) {
    return Error(core::error::invalid_argument,
                 from.string() + "/backup.json: not a format this fwdepot restores");
  }
  std::error_code ec;
  if (fs::exists(data_dir, ec) && !fs::is_empty(data_dir, ec)) {
    return Error(core::error::invalid_argument,
                 data_dir.string() + " is not empty: restore into a fresh directory");
  }
  const fs::path staging = data_dir.string() + ".restoring";
  if (auto r = make_private_dir(staging); !r) {
    return r.error();
  }
  // Whatever fails from here leaves the data directory untouched; the staging copy goes.
  auto fail_clean = [&](Error e) -> result<std::string> {
    fs::remove_all(staging, ec);
    return e;
  };
  if (auto r = copy_tree(from / "fwdepot.db", staging / "fwdepot.db", false); !r) {
    return fail_clean(r.error());
  }
  auto snapshot = inspect(staging / "fwdepot.db");
  if (!snapshot) {
    return fail_clean(snapshot.error());
  }
  for (const auto& image : snapshot->images) {
    const fs::path source = blob_path(from, image.sha256);
    if (auto v = verify_blob(source, image); !v) {
      return fail_clean(v.error());
    }
    const fs::path to = blob_path(staging, image.sha256);
    if (!fs::exists(to, ec)) {
      if (auto r = copy_tree(source, to, false); !r) {
        return fail_clean(r.error());
      }
    }
  }
  for (const char* name : {"fwdepot.toml", "pki", "keys"}) {
    if (fs::exists(from / name, ec)) {
      if (auto r = copy_tree(from / name, staging / name, false); !r) {
        return fail_clean(r.error());
      }
    }
  }
  // The restored configuration must find the restored catalog and blobs where they are.
  auto config = load_config(staging, {}, nullptr);  // the file alone, not this shell's variables
  if (!config) {
    return fail_clean(config.error());
  }
  if (config->database != config->data_dir / "fwdepot.db" ||
      config->blobs != config->data_dir / "blobs") {
    return fail_clean(Error(core::error::invalid_argument,
                            "the backed-up fwdepot.toml moves storage.database or storage.blobs "
                            "out of the data directory; restore those by hand"));
  }
  if (fs::exists(data_dir, ec)) {
    fs::remove(data_dir, ec);  // empty, checked above
  }
  if (auto r = publish(staging, data_dir); !r) {
    return fail_clean(r.error());
  }
  return "restore: " + std::to_string(snapshot->images.size()) + " images, " +
         std::to_string(snapshot->devices) + " devices into " + data_dir.string() +
         " (integrity_check ok, every payload verified)";
}

}  // namespace

int run_backup(const BackupOptions& o) {
  auto done = backup(o.data_dir, o.out);
  if (!done) {
    return fail(done.error().message());
  }
  std::cout << *done << "\n";
  return 0;
}

int run_restore(const RestoreOptions& o) {
  auto done = restore(o.from, o.data_dir);
  if (!done) {
    return fail(done.error().message());
  }
  std::cout << *done << "\n";
  return 0;
}

}  // namespace fwdepot::cli
