// SPDX-License-Identifier: Apache-2.0
// The CoAPS download's read-ahead over a real blob store: every block comes back as the blob
// has it, in any order and at any size, with one read of the blob per window of blocks, and a
// blob that ends or shrinks under it gives a clear failure, never stale or foreign bytes.
#include "coaps/read_ahead.hpp"

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

class ReadAheadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::FileBlobStore::open(dir_ / "blobs");
    ASSERT_TRUE(store) << store.error();
    store_ = std::move(*store);
    // 100,000 bytes that differ from block to block: 6 windows and a bit.
    for (std::size_t i = 0; i < 100'000; ++i) {
      bytes_.push_back(static_cast<char>((i * 7 + i / 251) & 0xff));
    }
    auto writer = store_->begin_write();
    ASSERT_TRUE(writer);
    ASSERT_TRUE((*writer)->write(bytes_));
    auto digest = (*writer)->commit();
    ASSERT_TRUE(digest);
    digest_ = *digest;
    auto reader = store_->open_blob(digest_);
    ASSERT_TRUE(reader);
    reader_ = std::make_unique<CountingReader>(std::move(*reader));
  }

  // Block `num` of `size` bytes (the last one shorter), as the read-ahead copies it.
  ::testing::AssertionResult block_matches(std::uint64_t num, std::size_t size) {
    const std::uint64_t offset = num * size;
    const std::size_t n = std::min<std::size_t>(size, bytes_.size() - offset);
    std::vector<char> out(n);
    if (!ahead_.copy(*reader_, offset, out)) {
      return ::testing::AssertionFailure() << "block " << num << " of " << size << " failed";
    }
    if (std::string(out.begin(), out.end()) != bytes_.substr(offset, n)) {
      return ::testing::AssertionFailure() << "block " << num << " of " << size << " differs";
    }
    return ::testing::AssertionSuccess();
  }

  TempDir dir_;
  std::unique_ptr<storage::FileBlobStore> store_;
  std::string bytes_;
  Sha256Digest digest_{};
  std::unique_ptr<CountingReader> reader_;
  ReadAhead ahead_;
};

TEST_F(ReadAheadTest, ADownloadInOrderReadsTheBlobOncePerWindow) {
  const std::size_t blocks = (bytes_.size() + 1023) / 1024;
  for (std::uint64_t num = 0; num < blocks; ++num) {
    ASSERT_TRUE(block_matches(num, 1024));
  }
  // 98 blocks of 1 KiB in windows of 16 KiB: 7 reads (the last window is short), not 98.
  EXPECT_EQ(reader_->reads,
            static_cast<int>((bytes_.size() + ReadAhead::kBytes - 1) / ReadAhead::kBytes));
}

TEST_F(ReadAheadTest, BlocksInAnyOrderAndOfEverySizeAreTheBlobsBytes) {
  for (const std::size_t size : {16u, 64u, 1024u}) {
    const std::uint64_t blocks = (bytes_.size() + size - 1) / size;
    // Backwards, a resumption in the middle, the last block, the first, and a repeat.
    for (const std::uint64_t num : {blocks - 1, blocks / 2, blocks / 2 + 1, blocks / 2 - 1,
                                    std::uint64_t{0}, blocks - 1, blocks - 1}) {
      EXPECT_TRUE(block_matches(num, size));
    }
  }
  // More than a window at once goes straight to the blob.
  std::vector<char> big(ReadAhead::kBytes + 3);
  ASSERT_TRUE(ahead_.copy(*reader_, 5, big));
  EXPECT_EQ(std::string(big.begin(), big.end()), bytes_.substr(5, big.size()));
}

TEST_F(ReadAheadTest, PastTheEndOrAShrunkenBlobFailsWithoutStaleBytes) {
  std::vector<char> out(1024);
  EXPECT_FALSE(ahead_.copy(*reader_, bytes_.size() - 10, out)) << "only 10 bytes are left";
  EXPECT_FALSE(ahead_.copy(*reader_, bytes_.size(), out));
  // The first window is read; then the blob's file loses everything after 20,000 bytes.
  ASSERT_TRUE(block_matches(0, 1024));
  const auto file = store_->path_of(digest_);
  std::filesystem::permissions(file, std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::add);
  std::filesystem::resize_file(file, 20'000);
  EXPECT_TRUE(block_matches(1, 1024)) << "still inside the window read before";
  EXPECT_FALSE(ahead_.copy(*reader_, 19'500, out)) << "the blob now ends 500 bytes on";
  EXPECT_FALSE(ahead_.copy(*reader_, 30'000, out));
  EXPECT_TRUE(block_matches(18, 1024)) << "what is left still reads";
}

}  // namespace
}  // namespace fwdepot::server
