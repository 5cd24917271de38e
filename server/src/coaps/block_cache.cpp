// SPDX-License-Identifier: Apache-2.0
#include "coaps/block_cache.hpp"

#include <algorithm>

namespace fwdepot::server {
namespace {

// Reads until `out` is full or the blob ends; how much it read (short on an error too).
std::size_t read_fully(const storage::BlobReader& blob, std::uint64_t offset, std::span<char> out) {
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

}  // namespace

bool BlockCache::copy(const Sha256Digest& id, const storage::BlobReader& blob, std::uint64_t offset,
                      std::span<char> out) {
  const std::uint64_t size = blob.size();
  if (offset > size || out.size() > size - offset) {
    return false;
  }
  if (out.empty()) {
    return true;
  }
  const std::uint64_t index = offset / kWindowBytes;
  if (index != (offset + out.size() - 1) / kWindowBytes) {
    // Across two windows: more than a block of CoAP's (at most 1 KiB, aligned) ever is.
    return read_fully(blob, offset, out) == out.size();
  }
  Window* w = find(id, index);
  bool trusted = true;
  if (w == nullptr) {
    w = &replaceable();
    if (!w->bytes) {
      w->bytes = std::make_unique_for_overwrite<char[]>(kWindowBytes);
    }
    const std::uint64_t start = index * kWindowBytes;
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(kWindowBytes, size - start));
    w->blob = id;
    w->index = index;
    w->size = read_fully(blob, start, std::span<char>(w->bytes.get(), want));
    // Short of what the blob's size promises (shrunk on disk, or a read error): serve what this
    // request needs of it if it can, but never keep it for the next one.
    trusted = w->size == want;
  }
  const auto from = static_cast<std::size_t>(offset - w->index * kWindowBytes);
  const bool served = from + out.size() <= w->size;
  if (served) {
    std::copy_n(w->bytes.get() + from, out.size(), out.data());
  }
  if (served && trusted) {
    w->used = ++clock_;
  } else {
    w->size = 0;  // never found again, and the first to be replaced
    w->used = 0;
  }
  return served;
}

BlockCache::Window* BlockCache::find(const Sha256Digest& id, std::uint64_t index) {
  for (Window& w : windows_) {
    if (w.index == index && w.size > 0 && w.blob == id) {
      return &w;
    }
  }
  return nullptr;
}

BlockCache::Window& BlockCache::replaceable() {
  if (windows_.size() < kWindows) {
    return windows_.emplace_back();
  }
  return *std::min_element(windows_.begin(), windows_.end(),
                           [](const Window& a, const Window& b) { return a.used < b.used; });
}

}  // namespace fwdepot::server
