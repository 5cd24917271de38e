// SPDX-License-Identifier: Apache-2.0
// The bytes of a block-wise download, read from its blob ahead of the blocks asked for.
#pragma once

#include "fwdepot/storage/blob_store.hpp"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>

namespace fwdepot::server {

// A download's bytes from its blob, kBytes at a time: a block of 1 KiB or less is then one
// read in sixteen, not a read per block. Held only while a transfer runs.
class ReadAhead {
 public:
  static constexpr std::size_t kBytes = 16 * 1024;

  // Copies the blob's bytes at [offset, offset + out.size()) into `out`; false if the blob
  // ends before (as its reader's size says, or shorter still on disk) or cannot be read.
  [[nodiscard]] bool copy(const storage::BlobReader& blob, std::uint64_t offset,
                          std::span<char> out) {
    const std::uint64_t size = blob.size();
    if (offset > size || out.size() > size - offset) {
      return false;
    }
    if (out.size() > kBytes) {
      return read_fully(blob, offset, out) == out.size();
    }
    if (offset < at_ || offset - at_ + out.size() > size_) {
      if (!bytes_) {
        bytes_ = std::make_unique_for_overwrite<char[]>(kBytes);
      }
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(kBytes, size - offset));
      at_ = offset;
      size_ = read_fully(blob, offset, std::span<char>(bytes_.get(), want));
      if (out.size() > size_) {
        clear();
        return false;
      }
    }
    std::copy_n(bytes_.get() + (offset - at_), out.size(), out.data());
    return true;
  }

  void clear() {
    bytes_.reset();
    at_ = 0;
    size_ = 0;
  }

 private:
  // Reads until `out` is full or the blob ends; how much it read (short on an error too).
  static std::size_t read_fully(const storage::BlobReader& blob, std::uint64_t offset,
                                std::span<char> out) {
    std::size_t done = 0;
    while (done < out.size()) {
      auto got = blob.read_at(offset + done, out.subspan(done));
      if (!got || *got == 0) {
        break;
      }
      done += *got;
    }
    return done;
  }

  std::unique_ptr<char[]> bytes_;
  std::uint64_t at_ = 0;
  std::size_t size_ = 0;
};

}  // namespace fwdepot::server
