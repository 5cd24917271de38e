// SPDX-License-Identifier: Apache-2.0
// The CoAPS downloads' block cache over a real blob store: every block comes back as its blob
// has it, in any order and at any size, with one read of the blob per window; devices on the
// same image share reads, two images never share bytes, the windows held stay bounded, and a
// blob that ends or shrinks under it gives a clear failure, never stale bytes.
#include "coaps/block_cache.hpp"

#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

namespace fwdepot::server {
namespace {

using fwdepot::testing::TempDir;

// A blob reader that counts the reads it passes on to the store's reader.
class CountingReader final : public storage::BlobReader {
 public:
  explicit CountingReader(std::unique_ptr<storage::BlobReader> inner) : inner_(std::move(inner)) {}
  std::uint64_t size() const override { return inner_->size(); }
  result<std::size_t> read_at(std::uint64_t offset, std::span<char> out) const override {
    ++reads;
    return inner_->read_at(offset, out);
  }
  mutable int reads = 0;

 private:
  std::unique_ptr<storage::BlobReader> inner_;
};

struct Blob {
  std::string bytes;
  Sha256Digest id{};
};

class BlockCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::FileBlobStore::open(dir_ / "blobs");
    ASSERT_TRUE(store) << store.error();
    store_ = std::move(*store);
    a_ = add(100'000, 7);  // 6 windows and a bit
    b_ = add(100'000, 11);
  }

  // `size` bytes that differ from block to block and, with another `seed`, from blob to blob.
  Blob add(std::size_t size, unsigned seed) {
    Blob blob;
    for (std::size_t i = 0; i < size; ++i) {
      blob.bytes.push_back(static_cast<char>((i * seed + i / 251) & 0xff));
    }
    auto writer = store_->begin_write();
    EXPECT_TRUE(writer);
    EXPECT_TRUE((*writer)->write(blob.bytes));
    auto digest = (*writer)->commit();
    EXPECT_TRUE(digest);
    if (digest) {
      blob.id = *digest;
    }
    return blob;
  }

  std::unique_ptr<CountingReader> open(const Blob& blob) {
    auto reader = store_->open_blob(blob.id);
    EXPECT_TRUE(reader);
    return std::make_unique<CountingReader>(std::move(*reader));
  }

  // Block `num` of `size` bytes (the last one shorter), as the cache copies it.
  ::testing::AssertionResult block_matches(const Blob& blob, CountingReader& reader,
                                           std::uint64_t num, std::size_t size) {
    const std::uint64_t offset = num * size;
    const std::size_t n = std::min<std::size_t>(size, blob.bytes.size() - offset);
    std::vector<char> out(n);
    if (!cache_.copy(blob.id, reader, offset, out)) {
      return ::testing::AssertionFailure() << "block " << num << " of " << size << " failed";
    }
    if (std::string(out.begin(), out.end()) != blob.bytes.substr(offset, n)) {
      return ::testing::AssertionFailure() << "block " << num << " of " << size << " differs";
    }
    return ::testing::AssertionSuccess();
  }

  TempDir dir_;
  std::unique_ptr<storage::FileBlobStore> store_;
  Blob a_;
  Blob b_;
  BlockCache cache_;
};

TEST_F(BlockCacheTest, ADownloadInOrderReadsTheBlobOncePerWindow) {
  auto reader = open(a_);
  const std::size_t blocks = (a_.bytes.size() + 1023) / 1024;
  for (std::uint64_t num = 0; num < blocks; ++num) {
    ASSERT_TRUE(block_matches(a_, *reader, num, 1024));
  }
  // 98 blocks of 1 KiB in windows of 16 KiB: 7 reads (the last window is short), not 98.
  const auto windows = (a_.bytes.size() + BlockCache::kWindowBytes - 1) / BlockCache::kWindowBytes;
  EXPECT_EQ(reader->reads, static_cast<int>(windows));
  EXPECT_EQ(cache_.windows_held(), windows);
}

TEST_F(BlockCacheTest, BlocksInAnyOrderAndOfEverySizeAreTheBlobsBytes) {
  auto reader = open(a_);
  for (const std::size_t size : {16u, 64u, 1024u}) {
    const std::uint64_t blocks = (a_.bytes.size() + size - 1) / size;
    // Backwards, a resumption in the middle, the last block, the first, and a repeat.
    for (const std::uint64_t num : {blocks - 1, blocks / 2, blocks / 2 + 1, blocks / 2 - 1,
                                    std::uint64_t{0}, blocks - 1, blocks - 1}) {
      EXPECT_TRUE(block_matches(a_, *reader, num, size));
    }
  }
  // Across two windows, and more than a window at once: straight from the blob.
  for (const std::size_t n : {std::size_t{100}, BlockCache::kWindowBytes + 3}) {
    const std::uint64_t offset = BlockCache::kWindowBytes - 50;
    std::vector<char> out(n);
    ASSERT_TRUE(cache_.copy(a_.id, *reader, offset, out));
    EXPECT_EQ(std::string(out.begin(), out.end()), a_.bytes.substr(offset, n));
  }
}

TEST_F(BlockCacheTest, DevicesOnOneImageShareReadsAndTwoImagesNeverShareBytes) {
  auto first = open(a_);
  auto second = open(a_);
  auto other = open(b_);
  ASSERT_TRUE(block_matches(a_, *first, 3, 1024));
  ASSERT_TRUE(block_matches(a_, *second, 4, 1024)) << "in the window the first device read";
  EXPECT_EQ(second->reads, 0);
  // The same offsets of the other image are its own bytes, read from it.
  ASSERT_TRUE(block_matches(b_, *other, 3, 1024));
  ASSERT_TRUE(block_matches(b_, *other, 4, 1024));
  EXPECT_EQ(other->reads, 1);
  ASSERT_TRUE(block_matches(a_, *second, 5, 1024));
  EXPECT_EQ(second->reads, 0);
}

TEST_F(BlockCacheTest, TheWindowsHeldAreBoundedAndTheLeastRecentlyUsedGoesFirst) {
  const std::size_t windows = BlockCache::kWindows + 10;
  const Blob big = add(windows * BlockCache::kWindowBytes, 13);
  auto reader = open(big);
  const std::size_t per_window = BlockCache::kWindowBytes / 1024;
  for (std::uint64_t w = 0; w < windows; ++w) {
    ASSERT_TRUE(block_matches(big, *reader, w * per_window, 1024));
    if (w == 0) {
      continue;
    }
    ASSERT_TRUE(block_matches(big, *reader, 1, 1024)) << "window 0 stays in use";
  }
  EXPECT_EQ(cache_.windows_held(), BlockCache::kWindows);
  EXPECT_EQ(reader->reads, static_cast<int>(windows)) << "window 0 was never replaced";
  ASSERT_TRUE(block_matches(big, *reader, 1 * per_window, 1024));
  EXPECT_EQ(reader->reads, static_cast<int>(windows) + 1)
      << "window 1 had been replaced, the oldest then";
  cache_.clear();
  EXPECT_EQ(cache_.windows_held(), 0u);
}

TEST_F(BlockCacheTest, PastTheEndOrAShrunkenBlobFailsWithoutStaleBytes) {
  auto reader = open(a_);
  std::vector<char> out(1024);
  EXPECT_FALSE(cache_.copy(a_.id, *reader, a_.bytes.size() - 10, out)) << "10 bytes are left";
  EXPECT_FALSE(cache_.copy(a_.id, *reader, a_.bytes.size(), out));
  // The first window is read; then the blob's file loses everything after 20,000 bytes.
  ASSERT_TRUE(block_matches(a_, *reader, 0, 1024));
  const auto file = store_->path_of(a_.id);
  std::filesystem::permissions(file, std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::add);
  std::filesystem::resize_file(file, 20'000);
  EXPECT_TRUE(block_matches(a_, *reader, 1, 1024)) << "still inside the window read before";
  EXPECT_FALSE(cache_.copy(a_.id, *reader, 19'500, out)) << "the blob now ends 500 bytes on";
  EXPECT_TRUE(block_matches(a_, *reader, 18, 1024)) << "what is left still reads";
  const int reads = reader->reads;
  EXPECT_TRUE(block_matches(a_, *reader, 17, 1024));
  EXPECT_GT(reader->reads, reads) << "a window read short is not kept";
  EXPECT_FALSE(cache_.copy(a_.id, *reader, 19'500, out)) << "and the short window never serves";
  EXPECT_FALSE(cache_.copy(a_.id, *reader, 30'000, out));
}

}  // namespace
}  // namespace fwdepot::server
