// SPDX-License-Identifier: Apache-2.0
// The bytes of block-wise downloads, read from their blobs ahead of the blocks asked for.
#pragma once

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/storage/blob_store.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace fwdepot::server {

/// Blobs' bytes in aligned windows of kWindowBytes, shared by every download of one listener
/// (not thread-safe: the listener's strand owns it). A 1 KiB block costs one read of its blob in
/// sixteen, and devices fetching the same image at about the same place share those reads. At
/// most kWindows windows (1 MiB) are held, the least recently used replaced first; windows are
/// keyed by the blob's SHA-256, so bytes never outlive or cross the blob they came from.
class BlockCache {
 public:
  static constexpr std::size_t kWindowBytes = 16 * 1024;
  static constexpr std::size_t kWindows = 64;

  /// Copies blob `id`'s bytes at [offset, offset + out.size()) into `out`, reading through
  /// `blob` (a reader of that blob) what is not held. False if the blob ends before (as the
  /// reader's size says, or shorter still on disk) or cannot be read. A window read short is
  /// never kept: the next request in it reads again.
  [[nodiscard]] bool copy(const Sha256Digest& id, const storage::BlobReader& blob,
                          std::uint64_t offset, std::span<char> out);

  /// Lets every window go (when no download is running).
  void clear() { windows_.clear(); }
  [[nodiscard]] std::size_t windows_held() const { return windows_.size(); }

 private:
  struct Window {
    Sha256Digest blob{};
    std::uint64_t index = 0;  // offset / kWindowBytes
    std::size_t size = 0;     // kWindowBytes, less at the blob's end
    std::uint64_t used = 0;   // when last used, on clock_
    std::unique_ptr<char[]> bytes;
  };

  Window* find(const Sha256Digest& id, std::uint64_t index);
  Window& replaceable();

  std::vector<Window> windows_;
  std::uint64_t clock_ = 0;
};

}  // namespace fwdepot::server
