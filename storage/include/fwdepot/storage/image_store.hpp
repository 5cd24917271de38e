// SPDX-License-Identifier: Apache-2.0
// The rules that tie catalog rows to blobs, whatever the backends:
//   - a row is inserted only after its blob is committed (durable), so a crash between the two
//     leaves an orphan blob, never a row without its bytes;
//   - a blob is deleted only after the last row that references it is gone;
//   - at start, temporary blobs are removed and orphans and rows without a sound blob reported.
#pragma once

#include "fwdepot/core/digest.hpp"
#include "fwdepot/storage/blob_store.hpp"
#include "fwdepot/storage/catalog.hpp"

#include <vector>

namespace fwdepot::storage {

/// The artifact file name of an image uploaded without a usable one: NAME-VERSION.bin. Names
/// are identifiers and versions SemVer, so it is one safe URL path segment as it is.
[[nodiscard]] std::string default_artifact_filename(std::string_view name,
                                                    std::string_view version);

/// Inserts the catalog row for `image` once its blob is committed. Errors: error::not_found (no
/// blob with image.sha256), error::corrupt (blob size differs from image.size_bytes), and the
/// errors of Catalog::insert_image.
[[nodiscard]] result<std::int64_t> add_image(Catalog& catalog, BlobStore& blobs,
                                             const NewImage& image);

/// Deletes the row, then the blob if no other row references it. Errors: those of
/// Catalog::delete_image (not_found, in_use); a blob that cannot be removed is left as an orphan
/// for the next recovery rather than failing a delete that has already happened.
[[nodiscard]] result<void> remove_image(Catalog& catalog, BlobStore& blobs, std::int64_t id);

/// The SHA-1 and MD5 of a committed blob (DDI's artifact hashes), read back in chunks.
/// Errors: those of opening and reading the blob; error::corrupt if it is shorter than its size.
[[nodiscard]] result<ArtifactHashes> hash_blob(BlobStore& blobs, const Sha256Digest& digest);

struct StartupReport {
  std::size_t removed_temp_files = 0;
  std::vector<Sha256Digest> orphan_blobs;   // committed, but no row references them
  std::vector<std::int64_t> broken_images;  // rows whose blob is missing or the wrong size
  std::size_t hashed_images = 0;  // rows from before uploads recorded a file name, SHA-1 and
                                  // MD5 (schema 1), now completed
};

/// Run once at start, before serving. Removes temporary blobs and reports (never deletes)
/// orphans and broken rows, so that an operator decides. Fills in the file name (NAME-VERSION.bin),
/// SHA-1 and MD5 of sound images that lack them (uploaded before they were recorded).
[[nodiscard]] result<StartupReport> recover_storage(Catalog& catalog, BlobStore& blobs);

}  // namespace fwdepot::storage
