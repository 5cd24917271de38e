// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/verifier.hpp"

#include <gtest/gtest.h>

namespace fwdepot {
namespace {

std::string make_image(std::size_t n) {
  std::string image(n, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    image[i] = static_cast<char>((i * 131 + 7) & 0xff);
  }
  return image;
}

ImageVerifier verifier_for(const std::string& image) {
  auto v = ImageVerifier::create(image.size(), sha256(image));
  EXPECT_TRUE(v);
  return std::move(*v);
}

TEST(ImageVerifier, AcceptsTheImageInChunksOfAnySize) {
  const std::string image = make_image(10000);
  for (std::size_t chunk : {1u, 7u, 512u, 4096u, 10000u}) {
    ImageVerifier v = verifier_for(image);
    for (std::size_t off = 0; off < image.size(); off += chunk) {
      ASSERT_TRUE(v.update(std::string_view(image).substr(off, chunk)));
    }
    EXPECT_EQ(v.bytes_seen(), image.size());
    EXPECT_TRUE(v.finish()) << "chunk " << chunk;
  }
}

TEST(ImageVerifier, RejectsEveryFlippedBit) {
  const std::string image = make_image(1024);
  for (std::size_t i = 0; i < image.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = image;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
      ImageVerifier v = verifier_for(image);
      ASSERT_TRUE(v.update(flipped));
      auto r = v.finish();
      ASSERT_FALSE(r) << "bit " << bit << " of byte " << i;
      EXPECT_EQ(r.error(), core::error::digest_mismatch);
    }
  }
}

TEST(ImageVerifier, RejectsTruncatedImages) {
  const std::string image = make_image(4096);
  ImageVerifier v = verifier_for(image);
  ASSERT_TRUE(v.update(std::string_view(image).substr(0, 4095)));
  EXPECT_EQ(v.finish().error(), core::error::size_mismatch);
}

TEST(ImageVerifier, RefusesExtraBytesAsSoonAsTheyArrive) {
  const std::string image = make_image(4096);
  ImageVerifier v = verifier_for(image);
  ASSERT_TRUE(v.update(std::string_view(image).substr(0, 4000)));
  auto over = v.update(make_image(97));
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error(), core::error::too_many_bytes);
  EXPECT_EQ(v.bytes_seen(), 4000u);
  // The failure is sticky: the right remaining bytes do not rescue it.
  EXPECT_EQ(v.update(std::string_view(image).substr(4000)).error(), core::error::too_many_bytes);
  EXPECT_EQ(v.finish().error(), core::error::too_many_bytes);
}

TEST(ImageVerifier, RejectsAppendedBytesAfterACompleteImage) {
  const std::string image = make_image(100);
  ImageVerifier v = verifier_for(image);
  ASSERT_TRUE(v.update(image));
  EXPECT_EQ(v.update("x").error(), core::error::too_many_bytes);
}

TEST(ImageVerifier, FinishesOnlyOnce) {
  const std::string image = make_image(10);
  ImageVerifier v = verifier_for(image);
  ASSERT_TRUE(v.update(image));
  ASSERT_TRUE(v.finish());
  EXPECT_EQ(v.finish().error(), core::error::invalid_argument);
  EXPECT_EQ(v.update("").error(), core::error::invalid_argument);
}

}  // namespace
}  // namespace fwdepot
