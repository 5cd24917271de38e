// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/storage/image_store.hpp"

#include "fwdepot/core/digest.hpp"

#include <algorithm>

namespace fwdepot::storage {

std::string default_artifact_filename(std::string_view name, std::string_view version) {
  return std::string(name) + "-" + std::string(version) + ".bin";
}

result<std::int64_t> add_image(Catalog& catalog, BlobStore& blobs, const NewImage& image) {
  auto size = blobs.blob_size(image.sha256);
  if (!size) {
    return size.error();
  }
  if (*size != image.size_bytes) {
    return Error(error::corrupt, "blob " + hex_encode(image.sha256) + " holds " +
                                     std::to_string(*size) + " bytes, manifest says " +
                                     std::to_string(image.size_bytes));
  }
  return catalog.insert_image(image);
}

result<void> remove_image(Catalog& catalog, BlobStore& blobs, std::int64_t id) {
  auto image = catalog.find_image(id);
  if (!image) {
    return image.error();
  }
  if (auto r = catalog.delete_image(id); !r) {
    return r;
  }
  auto users = catalog.count_images_with_blob(image->sha256);
  if (users && *users == 0) {
    // Best effort: if this fails the blob is an orphan, reported at the next start.
    (void)blobs.remove(image->sha256);
  }
  return {};
}

result<ArtifactHashes> hash_blob(BlobStore& blobs, const Sha256Digest& digest) {
  auto reader = blobs.open_blob(digest);
  if (!reader) {
    return reader.error();
  }
  ArtifactHasher hasher;
  std::vector<char> chunk(64 * 1024);
  std::uint64_t offset = 0;
  while (offset < (*reader)->size()) {
    auto got = (*reader)->read_at(offset, chunk);
    if (!got) {
      return got.error();
    }
    if (*got == 0) {
      return Error(error::corrupt, "blob " + hex_encode(digest) + " shorter than its size");
    }
    hasher.update(std::string_view(chunk.data(), *got));
    offset += *got;
  }
  return hasher.finish();
}

result<StartupReport> recover_storage(Catalog& catalog, BlobStore& blobs) {
  StartupReport report;
  auto recovered = blobs.recover();
  if (!recovered) {
    return recovered.error();
  }
  report.removed_temp_files = recovered->removed_temp_files;

  auto referenced = catalog.referenced_blobs();
  if (!referenced) {
    return referenced.error();
  }
  std::sort(referenced->begin(), referenced->end());
  auto stored = blobs.list_blobs();
  if (!stored) {
    return stored.error();
  }
  for (const auto& d : *stored) {
    if (!std::binary_search(referenced->begin(), referenced->end(), d)) {
      report.orphan_blobs.push_back(d);
    }
  }
  auto images = catalog.list_images();
  if (!images) {
    return images.error();
  }
  for (const auto& image : *images) {
    auto size = blobs.blob_size(image.sha256);
    if (!size || *size != image.size_bytes) {
      report.broken_images.push_back(image.id);
      continue;
    }
    if (image.filename.empty() || !image.has_artifact_hashes()) {
      auto hashes = hash_blob(blobs, image.sha256);
      if (!hashes) {
        return hashes.error();
      }
      const std::string filename = image.filename.empty()
                                       ? default_artifact_filename(image.name, image.version)
                                       : image.filename;
      if (auto r =
              catalog.set_artifact_fields(image.id, filename, hashes->sha1_hex, hashes->md5_hex);
          !r) {
        return r.error();
      }
      ++report.hashed_images;
    }
  }
  return report;
}

}  // namespace fwdepot::storage
