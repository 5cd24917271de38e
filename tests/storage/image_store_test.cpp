// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/storage/image_store.hpp"

#include "fwdepot/storage/sqlite_catalog.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

namespace fwdepot::storage {
namespace {

using fwdepot::testing::TempDir;

class ImageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { reopen(); }
  void reopen() {
    catalog_.reset();
    blobs_.reset();
    auto c = SqliteCatalog::open(dir_ / "fwdepot.db");
    auto b = FileBlobStore::open(dir_ / "blobs");
    ASSERT_TRUE(c && b);
    catalog_ = std::move(*c);
    blobs_ = std::move(*b);
  }
  NewImage commit_blob(std::string_view bytes, std::string version = "1.0.0") {
    auto w = blobs_->begin_write();
    EXPECT_TRUE(w && (*w)->write(bytes));
    auto d = (*w)->commit();
    EXPECT_TRUE(d);
    NewImage i;
    i.name = "fw";
    i.version = std::move(version);
    i.models = {"m"};
    i.size_bytes = bytes.size();
    i.sha256 = *d;
    i.envelope = "{}";
    i.created_at = 1;
    return i;
  }
  TempDir dir_;
  std::unique_ptr<SqliteCatalog> catalog_;
  std::unique_ptr<FileBlobStore> blobs_;
};

TEST_F(ImageStoreTest, AddsARowOnlyForACommittedBlobOfTheRightSize) {
  NewImage i = commit_blob("payload");
  NewImage missing = i;
  missing.sha256 = sha256("never written");
  EXPECT_EQ(add_image(*catalog_, *blobs_, missing).error(), error::not_found);
  NewImage wrong_size = i;
  wrong_size.size_bytes = 99;
  EXPECT_EQ(add_image(*catalog_, *blobs_, wrong_size).error(), error::corrupt);
  EXPECT_TRUE(catalog_->list_images()->empty());
  EXPECT_TRUE(add_image(*catalog_, *blobs_, i));
}

TEST_F(ImageStoreTest, CrashBetweenBlobAndRowLeavesAnOrphanNotAnImage) {
  const NewImage i = commit_blob("payload");  // durable blob, then "crash" before the row
  reopen();
  auto report = recover_storage(*catalog_, *blobs_);
  ASSERT_TRUE(report);
  EXPECT_TRUE(catalog_->list_images()->empty());
  ASSERT_EQ(report->orphan_blobs.size(), 1u);
  EXPECT_EQ(report->orphan_blobs[0], i.sha256);
  EXPECT_TRUE(report->broken_images.empty());
}

TEST_F(ImageStoreTest, ReportsRowsWhoseBlobIsMissing) {
  const NewImage i = commit_blob("payload");
  auto id = add_image(*catalog_, *blobs_, i);
  ASSERT_TRUE(id);
  std::filesystem::remove(blobs_->path_of(i.sha256));
  auto report = recover_storage(*catalog_, *blobs_);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->broken_images, std::vector<std::int64_t>{*id});
}

TEST_F(ImageStoreTest, RemovesASharedBlobWithItsLastImage) {
  const NewImage a = commit_blob("payload", "1.0.0");
  const NewImage b = commit_blob("payload", "1.0.1");
  auto ida = add_image(*catalog_, *blobs_, a);
  auto idb = add_image(*catalog_, *blobs_, b);
  ASSERT_TRUE(ida && idb);
  ASSERT_TRUE(remove_image(*catalog_, *blobs_, *ida));
  EXPECT_TRUE(*blobs_->exists(a.sha256));
  ASSERT_TRUE(remove_image(*catalog_, *blobs_, *idb));
  EXPECT_FALSE(*blobs_->exists(a.sha256));
  EXPECT_EQ(remove_image(*catalog_, *blobs_, *idb).error(), error::not_found);
}

// Images from before uploads recorded a file name, SHA-1 and MD5 get them at the next start.
TEST_F(ImageStoreTest, RecoveryFillsInMissingArtifactHashes) {
  const NewImage i = commit_blob("abc");
  auto id = add_image(*catalog_, *blobs_, i);
  ASSERT_TRUE(id);
  ASSERT_TRUE(catalog_->find_image(*id)->sha1_hex.empty());
  auto report = recover_storage(*catalog_, *blobs_);
  ASSERT_TRUE(report) << report.error();
  EXPECT_EQ(report->hashed_images, 1u);
  auto found = catalog_->find_image(*id);
  // The test vectors of FIPS 180 and RFC 1321 for "abc".
  EXPECT_EQ(found->sha1_hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(found->md5_hex, "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(found->filename, "fw-1.0.0.bin");
  EXPECT_EQ(recover_storage(*catalog_, *blobs_)->hashed_images, 0u);
}

TEST_F(ImageStoreTest, KeepsImageAndBlobWhileADeploymentNeedsThem) {
  const NewImage i = commit_blob("payload");
  auto id = add_image(*catalog_, *blobs_, i);
  ASSERT_TRUE(id);
  ASSERT_TRUE(catalog_->create_deployment({*id, {"dev"}, {}, false, 1}));
  EXPECT_EQ(remove_image(*catalog_, *blobs_, *id).error(), error::in_use);
  EXPECT_TRUE(*blobs_->exists(i.sha256));
  EXPECT_TRUE(catalog_->find_image(*id));
}

}  // namespace
}  // namespace fwdepot::storage
