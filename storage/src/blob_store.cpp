// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/storage/blob_store.hpp"

#include "fwdepot/core/openssl.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace fwdepot::storage {
namespace {

namespace fs = std::filesystem;

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
};

Error os_error(int err, const fs::path& path, std::string_view what) {
  const std::string detail =
      path.string() + ": " + std::string(what) + ": " + std::system_category().message(err);
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) {
    return Error(error::no_space, detail);
  }
  if (err == ENOENT) {
    return Error(error::not_found, detail);
  }
  return Error(error::io_error, detail);
}

result<void> fsync_dir(const fs::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0) {
    return os_error(errno, dir, "fsync directory");
  }
  return {};
}

// mkdir that also makes the new entry durable in its parent.
result<bool> ensure_dir(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0750) == 0) {
    if (auto r = fsync_dir(dir.parent_path()); !r) {
      return r.error();
    }
    return true;
  }
  if (errno == EEXIST) {
    return false;
  }
  return os_error(errno, dir, "mkdir");
}

class FileBlobWriter final : public BlobWriter {
 public:
  FileBlobWriter(UniqueFd fd, fs::path temp, const FileBlobStore& store, openssl::MdCtxPtr md)
      : fd_(std::move(fd)), temp_(std::move(temp)), store_(store), md_(std::move(md)) {}

  ~FileBlobWriter() override {
    if (!committed_) {
      fd_.reset();
      ::unlink(temp_.c_str());
    }
  }

  result<void> write(std::string_view bytes) override {
    if (committed_) {
      return Error(error::invalid_argument, "write after commit");
    }
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd_.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return os_error(errno, temp_, "write");
      }
      done += static_cast<std::size_t>(n);
    }
    if (EVP_DigestUpdate(md_.get(), bytes.data(), bytes.size()) != 1) {
      return Error(error::io_error, "SHA-256: " + openssl::drain_errors());
    }
    written_ += bytes.size();
    start_writeback();
    return {};
  }

  std::uint64_t bytes_written() const override { return written_; }

  Sha256Digest digest_so_far() const override {
    Sha256Digest d{};
    openssl::MdCtxPtr copy(EVP_MD_CTX_new());
    if (copy && EVP_MD_CTX_copy_ex(copy.get(), md_.get()) == 1) {
      EVP_DigestFinal_ex(copy.get(), d.data(), nullptr);
    }
    return d;
  }

  result<Sha256Digest> commit() override {
    if (committed_) {
      return Error(error::invalid_argument, "commit called twice");
    }
    const Sha256Digest digest = digest_so_far();
    if (::fsync(fd_.get()) != 0) {
      return os_error(errno, temp_, "fsync");
    }
    fd_.reset();
    const fs::path target = store_.path_of(digest);
    auto created = ensure_dir(target.parent_path());
    if (!created) {
      return created.error();
    }
    struct stat st {};
    if (::stat(target.c_str(), &st) == 0) {
      // Same digest, same bytes: keep the existing blob, drop this copy.
      ::unlink(temp_.c_str());
      committed_ = true;
      return digest;
    }
    if (::rename(temp_.c_str(), target.c_str()) != 0) {
      return os_error(errno, target, "rename");
    }
    committed_ = true;
    // The rename is durable only once both directories it touched are synced.
    if (auto r = fsync_dir(target.parent_path()); !r) {
      return r.error();
    }
    if (auto r = fsync_dir(temp_.parent_path()); !r) {
      return r.error();
    }
    return digest;
  }

 private:
  UniqueFd fd_;
  fs::path temp_;
  const FileBlobStore& store_;
  openssl::MdCtxPtr md_;
  // Hands every full stretch of kWritebackStep written bytes to the disk at once, without
  // waiting for it, so that the commit's fsync finds little left to write: a 256 MiB upload
  // otherwise spends about 0.1 s in that fsync on this machine's disk, after its last byte
  // arrived, and now a few milliseconds. A failure here is not an error: the fsync that follows
  // writes whatever is still dirty and reports what went wrong.
  void start_writeback() {
    if (written_ - writeback_from_ < kWritebackStep) {
      return;
    }
    ::sync_file_range(fd_.get(), static_cast<off_t>(writeback_from_),
                      static_cast<off_t>(written_ - writeback_from_), SYNC_FILE_RANGE_WRITE);
    writeback_from_ = written_;
  }

  static constexpr std::uint64_t kWritebackStep = 8U << 20;

  std::uint64_t written_ = 0;
  std::uint64_t writeback_from_ = 0;
  bool committed_ = false;
};

class FileBlobReader final : public BlobReader {
 public:
  FileBlobReader(UniqueFd fd, std::uint64_t size, fs::path path)
      : fd_(std::move(fd)), size_(size), path_(std::move(path)) {}

  std::uint64_t size() const override { return size_; }

  result<std::size_t> read_at(std::uint64_t offset, std::span<char> out) const override {
    while (true) {
      const ssize_t n = ::pread(fd_.get(), out.data(), out.size(), static_cast<off_t>(offset));
      if (n >= 0) {
        return static_cast<std::size_t>(n);
      }
      if (errno != EINTR) {
        return os_error(errno, path_, "pread");
      }
    }
  }

 private:
  UniqueFd fd_;
  std::uint64_t size_;
  fs::path path_;
};

}  // namespace

FileBlobStore::FileBlobStore(fs::path root) : root_(std::move(root)), tmp_(root_ / "tmp") {}

result<std::unique_ptr<FileBlobStore>> FileBlobStore::open(const fs::path& root) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) {
    return os_error(ec.value(), root, "create");
  }
  for (const fs::path& dir : {root / "sha256", root / "tmp"}) {
    if (auto r = ensure_dir(dir); !r) {
      return r.error();
    }
  }
  return std::unique_ptr<FileBlobStore>(new FileBlobStore(root));
}

fs::path FileBlobStore::path_of(const Sha256Digest& d) const {
  const std::string hex = hex_encode(d);
  return root_ / "sha256" / hex.substr(0, 2) / hex;
}

result<std::unique_ptr<BlobWriter>> FileBlobStore::begin_write() {
  auto suffix = random_bytes(12);
  if (!suffix) {
    return suffix.error();
  }
  fs::path temp = tmp_ / ("blob-" + hex_encode(*suffix) + ".part");
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640));
  if (!fd) {
    return os_error(errno, temp, "create");
  }
  openssl::MdCtxPtr md(EVP_MD_CTX_new());
  if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1) {
    ::unlink(temp.c_str());
    return Error(error::io_error, "SHA-256: " + openssl::drain_errors());
  }
  return std::unique_ptr<BlobWriter>(
      std::make_unique<FileBlobWriter>(std::move(fd), std::move(temp), *this, std::move(md)));
}

result<std::unique_ptr<BlobReader>> FileBlobStore::open_blob(const Sha256Digest& d) {
  const fs::path path = path_of(d);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return os_error(errno, path, "open");
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return os_error(errno, path, "stat");
  }
  return std::unique_ptr<BlobReader>(std::make_unique<FileBlobReader>(
      std::move(fd), static_cast<std::uint64_t>(st.st_size), path));
}

result<bool> FileBlobStore::exists(const Sha256Digest& d) {
  auto size = blob_size(d);
  if (size) {
    return true;
  }
  if (size.error() == error::not_found) {
    return false;
  }
  return size.error();
}

result<std::uint64_t> FileBlobStore::blob_size(const Sha256Digest& d) {
  struct stat st {};
  const fs::path path = path_of(d);
  if (::stat(path.c_str(), &st) != 0) {
    return os_error(errno, path, "stat");
  }
  return static_cast<std::uint64_t>(st.st_size);
}

result<void> FileBlobStore::remove(const Sha256Digest& d) {
  const fs::path path = path_of(d);
  if (::unlink(path.c_str()) != 0) {
    return os_error(errno, path, "unlink");
  }
  return fsync_dir(path.parent_path());
}

result<std::vector<Sha256Digest>> FileBlobStore::list_blobs() {
  std::vector<Sha256Digest> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root_ / "sha256", ec), end; !ec && it != end;
       it.increment(ec)) {
    if (!it->is_regular_file()) {
      continue;
    }
    auto d = parse_sha256_hex(it->path().filename().string());
    // Files that are not named by a digest are not blobs; leave them to the operator.
    if (d && path_of(*d) == it->path()) {
      out.push_back(*d);
    }
  }
  if (ec) {
    return os_error(ec.value(), root_ / "sha256", "list");
  }
  return out;
}

result<BlobRecovery> FileBlobStore::recover() {
  BlobRecovery report;
  std::error_code ec;
  for (fs::directory_iterator it(tmp_, ec), end; !ec && it != end; it.increment(ec)) {
    if (::unlink(it->path().c_str()) != 0) {
      return os_error(errno, it->path(), "unlink");
    }
    ++report.removed_temp_files;
  }
  if (ec) {
    return os_error(ec.value(), tmp_, "list");
  }
  if (report.removed_temp_files > 0) {
    if (auto r = fsync_dir(tmp_); !r) {
      return r.error();
    }
  }
  return report;
}

}  // namespace fwdepot::storage
