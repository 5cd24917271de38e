// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/storage/image_store.hpp"

#include <algorithm>

namespace fwdepot::storage {

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
    }
  }
  return report;
}

}  // namespace fwdepot::storage
