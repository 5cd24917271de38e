// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/digest.hpp"

#include <gtest/gtest.h>

#include <string>

namespace fwdepot {
namespace {

// FIPS 180 and RFC 1321 test vectors.
TEST(ArtifactHasher, KnownVectorsInAnyChunking) {
  ArtifactHasher whole;
  whole.update("abc");
  auto h = whole.finish();
  EXPECT_EQ(h.sha1_hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(h.md5_hex, "900150983cd24fb0d6963f7d28e17f72");

  ArtifactHasher bytewise;
  for (char c : std::string("abc")) {
    bytewise.update(std::string_view(&c, 1));
  }
  bytewise.update("");
  auto b = bytewise.finish();
  EXPECT_EQ(b.sha1_hex, h.sha1_hex);
  EXPECT_EQ(b.md5_hex, h.md5_hex);

  ArtifactHasher empty;  // no update at all: the hashes of nothing
  auto e = empty.finish();
  EXPECT_EQ(e.sha1_hex, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_EQ(e.md5_hex, "d41d8cd98f00b204e9800998ecf8427e");
}

TEST(ArtifactHasher, LongInputsComeOutWholeInAnyChunking) {
  // A million 'a's (the FIPS 180 long vector), then 25 of them in 64 KiB chunks and whole.
  const std::string million(1000000, 'a');
  ArtifactHasher once;
  once.update(million);
  EXPECT_EQ(once.finish().sha1_hex, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  ArtifactHasher big;
  ArtifactHasher big_again;
  std::string all;
  for (int i = 0; i < 25; ++i) {
    all += million;
  }
  for (std::size_t at = 0; at < all.size(); at += 65536) {
    big.update(std::string_view(all).substr(at, 65536));
  }
  big_again.update(all);
  auto chunked = big.finish();
  auto whole = big_again.finish();
  EXPECT_EQ(chunked.sha1_hex, whole.sha1_hex);
  EXPECT_EQ(chunked.md5_hex, whole.md5_hex);
  EXPECT_NE(chunked.md5_hex, "d41d8cd98f00b204e9800998ecf8427e");
}

}  // namespace
}  // namespace fwdepot
