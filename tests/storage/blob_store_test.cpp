// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/storage/blob_store.hpp"

#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <fstream>

namespace fwdepot::storage {
namespace {

using fwdepot::testing::TempDir;
namespace fs = std::filesystem;

std::unique_ptr<FileBlobStore> open_store(const fs::path& root) {
  auto store = FileBlobStore::open(root);
  EXPECT_TRUE(store) << store.error();
  return std::move(*store);
}

std::size_t count_files(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    n += entry.is_regular_file() ? 1 : 0;
  }
  return n;
}

Sha256Digest put(BlobStore& store, std::string_view bytes) {
  auto w = store.begin_write();
  EXPECT_TRUE(w);
  EXPECT_TRUE((*w)->write(bytes));
  auto d = (*w)->commit();
  EXPECT_TRUE(d) << d.error();
  return *d;
}

TEST(FileBlobStore, CommitsUnderTheDigestAndReadsAnyRange) {
  TempDir dir;
  auto store = open_store(dir.path());
  std::string data(100000, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>(i * 7);
  }
  auto w = store->begin_write();
  ASSERT_TRUE(w);
  for (std::size_t off = 0; off < data.size(); off += 4096) {
    ASSERT_TRUE((*w)->write(std::string_view(data).substr(off, 4096)));
  }
  EXPECT_EQ((*w)->bytes_written(), data.size());
  auto digest = (*w)->commit();
  ASSERT_TRUE(digest);
  EXPECT_EQ(*digest, sha256(data));
  const std::string hex = hex_encode(*digest);
  EXPECT_EQ(store->path_of(*digest), dir.path() / "sha256" / hex.substr(0, 2) / hex);
  EXPECT_TRUE(fs::exists(store->path_of(*digest)));
  EXPECT_EQ(count_files(store->temp_dir()), 0u);

  auto reader = store->open_blob(*digest);
  ASSERT_TRUE(reader);
  EXPECT_EQ((*reader)->size(), data.size());
  std::string buf(1000, '\0');
  auto n = (*reader)->read_at(54321, buf);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1000u);
  EXPECT_EQ(buf, data.substr(54321, 1000));
  n = (*reader)->read_at(data.size() - 10, buf);
  EXPECT_EQ(*n, 10u);
  EXPECT_EQ(*(*reader)->read_at(data.size(), buf), 0u);
  EXPECT_EQ((*w)->commit().error(), error::invalid_argument);
}

// Past a few MiB the writer hands what it wrote to the disk as it goes (so that the commit's
// fsync has little left): pieces of uneven size across those steps all land in order.
TEST(FileBlobStore, ALargeBlobWrittenInUnevenPiecesReadsBackWhole) {
  TempDir dir;
  auto store = open_store(dir.path());
  std::string data(21 * 1024 * 1024 + 123, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>((i * 131) ^ (i >> 13));
  }
  auto w = store->begin_write();
  ASSERT_TRUE(w);
  std::size_t piece = 1;
  for (std::size_t off = 0; off < data.size(); off += piece, piece = piece * 3 % 1000003 + 1) {
    ASSERT_TRUE((*w)->write(std::string_view(data).substr(off, piece)));
  }
  EXPECT_EQ((*w)->bytes_written(), data.size());
  auto digest = (*w)->commit();
  ASSERT_TRUE(digest) << digest.error();
  EXPECT_EQ(*digest, sha256(data));
  auto reader = store->open_blob(*digest);
  ASSERT_TRUE(reader);
  std::string back(data.size(), '\0');
  std::size_t got = 0;
  while (got < back.size()) {
    auto n = (*reader)->read_at(got, std::span<char>(back).subspan(got));
    ASSERT_TRUE(n);
    ASSERT_GT(*n, 0u);
    got += *n;
  }
  EXPECT_TRUE(back == data);
}

TEST(FileBlobStore, StoresEqualContentOnce) {
  TempDir dir;
  auto store = open_store(dir.path());
  const Sha256Digest a = put(*store, "same bytes");
  const Sha256Digest b = put(*store, "same bytes");
  EXPECT_EQ(a, b);
  EXPECT_EQ(store->list_blobs()->size(), 1u);
  EXPECT_EQ(count_files(store->temp_dir()), 0u);
}

TEST(FileBlobStore, AbandonedWriterLeavesNothing) {
  TempDir dir;
  auto store = open_store(dir.path());
  {
    auto w = store->begin_write();
    ASSERT_TRUE(w);
    ASSERT_TRUE((*w)->write("half an image"));
    EXPECT_EQ(count_files(store->temp_dir()), 1u);
  }
  EXPECT_EQ(count_files(dir.path()), 0u);
}

TEST(FileBlobStore, CrashBetweenWriteAndRenameLeavesNothingVisible) {
  TempDir dir;
  {
    auto store = open_store(dir.path());
    put(*store, "a committed blob");
  }
  // What a crash after write() and before commit() leaves: a temp file, nothing else. The
  // writer's destructor never runs in a crash, so simulate its leftovers directly.
  std::ofstream(dir.path() / "tmp" / "blob-deadbeef.part") << "half an image";
  auto store = open_store(dir.path());
  EXPECT_EQ(store->list_blobs()->size(), 1u);  // the torn blob is not visible
  auto report = store->recover();
  ASSERT_TRUE(report);
  EXPECT_EQ(report->removed_temp_files, 1u);
  EXPECT_EQ(count_files(store->temp_dir()), 0u);
  EXPECT_EQ(store->list_blobs()->size(), 1u);
  EXPECT_EQ(store->recover()->removed_temp_files, 0u);
}

TEST(FileBlobStore, RemovesAndReportsMissingBlobs) {
  TempDir dir;
  auto store = open_store(dir.path());
  const Sha256Digest d = put(*store, "bytes");
  EXPECT_TRUE(*store->exists(d));
  EXPECT_EQ(*store->blob_size(d), 5u);
  ASSERT_TRUE(store->remove(d));
  EXPECT_FALSE(*store->exists(d));
  EXPECT_EQ(store->remove(d).error(), error::not_found);
  EXPECT_EQ(store->open_blob(d).error(), error::not_found);
  EXPECT_EQ(store->blob_size(d).error(), error::not_found);
}

TEST(FileBlobStore, IgnoresFilesThatAreNotNamedByTheirDigest) {
  TempDir dir;
  auto store = open_store(dir.path());
  put(*store, "x");
  fs::create_directories(dir.path() / "sha256" / "zz");
  std::ofstream(dir.path() / "sha256" / "zz" / "notes.txt") << "operator notes";
  EXPECT_EQ(store->list_blobs()->size(), 1u);
}

}  // namespace
}  // namespace fwdepot::storage
