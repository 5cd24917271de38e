// SPDX-License-Identifier: Apache-2.0
// DDI's artifact hashes after the upload: computed in the background against a real SQLite file
// and blob store, and no DDI offer of an image before they are stored.
#include "service/artifact_hashing.hpp"
#include "service/ddi_service.hpp"

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/storage/blob_store.hpp"
#include "fwdepot/storage/image_store.hpp"
#include "fwdepot/storage/sqlite_catalog.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

namespace fwdepot::server {
namespace {

using fwdepot::testing::TempDir;

std::string digest_hex(const EVP_MD* md, std::string_view bytes) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), out, &n, md, nullptr);
  return hex_encode(std::span<const unsigned char>(out, n));
}

class ArtifactHashingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto catalog = storage::SqliteCatalog::open(dir_ / "fwdepot.db");
    ASSERT_TRUE(catalog) << catalog.error();
    auto blobs = storage::FileBlobStore::open(dir_ / "blobs");
    ASSERT_TRUE(blobs) << blobs.error();
    backend_ = std::make_unique<Backend>(std::move(*catalog), std::move(*blobs));
  }

  // An image of `bytes` as an upload stores it now: committed, without SHA-1 and MD5.
  std::int64_t add_unhashed(const std::string& bytes, const std::string& version = "1.1.0") {
    auto writer = backend_->blobs().begin_write();
    EXPECT_TRUE(writer);
    EXPECT_TRUE((*writer)->write(bytes));
    auto digest = (*writer)->commit();
    EXPECT_TRUE(digest);
    storage::NewImage image{.name = "fw",
                            .version = version,
                            .models = {"m1"},
                            .size_bytes = bytes.size(),
                            .sha256 = *digest,
                            .envelope = R"({"payloadType":"x"})",
                            .signer_key_ids = {"k"},
                            .description = {},
                            .created_at = 10,
                            .filename = "fw.bin",
                            .sha1_hex = {},
                            .md5_hex = {}};
    auto id = backend_->with_catalog(
        [&](storage::Catalog& c) { return storage::add_image(c, backend_->blobs(), image); });
    EXPECT_TRUE(id) << id.error();
    return id ? *id : 0;
  }

  TempDir dir_;
  std::unique_ptr<Backend> backend_;
};

TEST_F(ArtifactHashingTest, StoresTheHashesOfWhatIsQueuedAndOffersOverDdiOnlyThen) {
  std::string bytes(3 * 1024 * 1024 + 17, 'x');
  for (std::size_t i = 0; i < bytes.size(); i += 997) {
    bytes[i] = static_cast<char>(i % 251);
  }
  const std::int64_t id = add_unhashed(bytes);
  ASSERT_TRUE(backend_->with_catalog([&](storage::Catalog& c) {
    return c.create_deployment({.image_id = id, .devices = {}, .models = {"m1"}});
  }));
  Metrics metrics;
  DdiService ddi(*backend_, metrics, DdiOptions{});
  const certs::DeviceIdentity who{"dev-1", "m1", "01"};
  // Deployed, but without its hashes: no action yet.
  auto polled = ddi.poll(who, "https://h/DEFAULT/controller/v1/dev-1", 20);
  ASSERT_EQ(polled.status, 200) << polled.body;
  EXPECT_EQ(polled.body.find("deploymentBase"), std::string::npos) << polled.body;

  std::mutex m;
  std::condition_variable cv;
  std::vector<std::pair<std::int64_t, bool>> done;
  {
    ArtifactHashing hashing(*backend_, [&](std::int64_t image, bool stored) {
      std::lock_guard g(m);
      done.emplace_back(image, stored);
      cv.notify_one();
    });
    hashing.add(id);
    hashing.add(id + 1);  // no such image: skipped, reported as not stored
    std::unique_lock g(m);
    ASSERT_TRUE(cv.wait_for(g, std::chrono::seconds(30), [&] { return done.size() == 2; }));
  }
  EXPECT_EQ(done[0], std::make_pair(id, true));
  EXPECT_EQ(done[1], std::make_pair(id + 1, false));
  auto image = backend_->with_catalog([&](storage::Catalog& c) { return c.find_image(id); });
  ASSERT_TRUE(image);
  EXPECT_EQ(image->sha1_hex, digest_hex(EVP_sha1(), bytes));
  EXPECT_EQ(image->md5_hex, digest_hex(EVP_md5(), bytes));
  EXPECT_EQ(image->filename, "fw.bin");

  polled = ddi.poll(who, "https://h/DEFAULT/controller/v1/dev-1", 21);
  ASSERT_EQ(polled.status, 200) << polled.body;
  EXPECT_NE(polled.body.find("deploymentBase"), std::string::npos) << polled.body;
}

TEST_F(ArtifactHashingTest, ANewerDeploymentSupersedesWhileItsImageIsBeingHashed) {
  const std::int64_t a = add_unhashed("image a", "1.1.0");
  const std::int64_t b = add_unhashed("image b", "1.2.0");
  ASSERT_TRUE(backend_->with_catalog([&](storage::Catalog& c) {
    return c.set_artifact_fields(a, "fw.bin", std::string(40, 'a'), std::string(32, 'a'));
  }));
  ASSERT_TRUE(backend_->with_catalog([&](storage::Catalog& c) {
    return c.create_deployment({.image_id = a, .devices = {}, .models = {"m1"}, .created_at = 1});
  }));
  Metrics metrics;
  DdiService ddi(*backend_, metrics, DdiOptions{});
  const certs::DeviceIdentity who{"dev-1", "m1", "01"};
  const std::string base = "https://h/DEFAULT/controller/v1/dev-1";
  auto polled = ddi.poll(who, base, 20);
  EXPECT_NE(polled.body.find("deploymentBase"), std::string::npos) << polled.body;
  // The admin replaces it with an image whose hashes are not stored yet: the running action is
  // stopped at once (not offered on), and the new one waits for its hashes.
  ASSERT_TRUE(backend_->with_catalog([&](storage::Catalog& c) {
    return c.create_deployment({.image_id = b, .devices = {}, .models = {"m1"}, .created_at = 2});
  }));
  polled = ddi.poll(who, base, 21);
  EXPECT_NE(polled.body.find("cancelAction"), std::string::npos) << polled.body;
  EXPECT_EQ(polled.body.find("deploymentBase"), std::string::npos) << polled.body;
}

}  // namespace
}  // namespace fwdepot::server
