// SPDX-License-Identifier: Apache-2.0
// Content-addressed storage for image payloads. An abstract interface, because object storage
// will sit beside the local filesystem when fwdepot scales out.
//
// A blob becomes visible under its SHA-256 only once it is complete and durable; until then it
// is a temporary object that recovery removes. Blobs are immutable.
#pragma once

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/error.hpp"
#include "fwdepot/storage/error.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace fwdepot::storage {

/// Receives one blob. Destroying a writer that was not committed discards what it wrote.
class BlobWriter {
 public:
  virtual ~BlobWriter() = default;
  /// Appends bytes. Errors: error::no_space, error::io_error.
  [[nodiscard]] virtual result<void> write(std::string_view bytes) = 0;
  [[nodiscard]] virtual std::uint64_t bytes_written() const = 0;
  /// The SHA-256 of everything written so far.
  [[nodiscard]] virtual Sha256Digest digest_so_far() const = 0;
  /// Makes the blob durable and visible under its SHA-256, which it returns. If a blob with that
  /// digest exists already, this one is dropped (same bytes). After commit() the writer is
  /// spent. Errors: error::no_space, error::io_error, error::invalid_argument (used twice).
  [[nodiscard]] virtual result<Sha256Digest> commit() = 0;
};

/// Reads one committed blob at any offset; independent readers share nothing.
class BlobReader {
 public:
  virtual ~BlobReader() = default;
  [[nodiscard]] virtual std::uint64_t size() const = 0;
  /// Reads up to `out.size()` bytes at `offset`; returns how many (0 only at or past the end).
  /// Errors: error::io_error.
  [[nodiscard]] virtual result<std::size_t> read_at(std::uint64_t offset,
                                                    std::span<char> out) const = 0;
};

struct BlobRecovery {
  std::size_t removed_temp_files = 0;  // half-written blobs from a crash, now deleted
};

class BlobStore {
 public:
  virtual ~BlobStore() = default;
  /// Errors: error::io_error, error::no_space.
  [[nodiscard]] virtual result<std::unique_ptr<BlobWriter>> begin_write() = 0;
  /// Errors: error::not_found, error::io_error.
  [[nodiscard]] virtual result<std::unique_ptr<BlobReader>> open_blob(const Sha256Digest& d) = 0;
  [[nodiscard]] virtual result<bool> exists(const Sha256Digest& d) = 0;
  /// Size of a committed blob. Errors: error::not_found.
  [[nodiscard]] virtual result<std::uint64_t> blob_size(const Sha256Digest& d) = 0;
  /// Errors: error::not_found, error::io_error.
  [[nodiscard]] virtual result<void> remove(const Sha256Digest& d) = 0;
  [[nodiscard]] virtual result<std::vector<Sha256Digest>> list_blobs() = 0;
  /// Removes temporary objects left by writers that never committed (a crash). Call at start,
  /// before any writer exists.
  [[nodiscard]] virtual result<BlobRecovery> recover() = 0;
};

/// Blobs as files: ROOT/sha256/ab/<64 hex>, temporary files in ROOT/tmp. A commit fsyncs the
/// file, renames it into place and fsyncs the directories it changed, so a blob that is
/// visible is complete on disk whatever happens next.
class FileBlobStore final : public BlobStore {
 public:
  /// Creates ROOT and its subdirectories if needed. Errors: error::io_error.
  [[nodiscard]] static result<std::unique_ptr<FileBlobStore>> open(
      const std::filesystem::path& root);

  /// Where a committed blob lives (whether or not it exists).
  [[nodiscard]] std::filesystem::path path_of(const Sha256Digest& d) const;
  [[nodiscard]] const std::filesystem::path& temp_dir() const { return tmp_; }

  result<std::unique_ptr<BlobWriter>> begin_write() override;
  result<std::unique_ptr<BlobReader>> open_blob(const Sha256Digest& d) override;
  result<bool> exists(const Sha256Digest& d) override;
  result<std::uint64_t> blob_size(const Sha256Digest& d) override;
  result<void> remove(const Sha256Digest& d) override;
  result<std::vector<Sha256Digest>> list_blobs() override;
  result<BlobRecovery> recover() override;

 private:
  explicit FileBlobStore(std::filesystem::path root);
  std::filesystem::path root_;
  std::filesystem::path tmp_;
};

}  // namespace fwdepot::storage
