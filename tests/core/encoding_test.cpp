// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/encoding.hpp"

#include <gtest/gtest.h>

namespace fwdepot {
namespace {

TEST(Base64, MatchesRfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},
                                                         {"f", "Zg=="},
                                                         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},
                                                         {"foob", "Zm9vYg=="},
                                                         {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64_encode(plain), encoded);
    auto decoded = base64_decode(encoded);
    ASSERT_TRUE(decoded);
    EXPECT_EQ(*decoded, plain);
  }
}

TEST(Base64, AcceptsUrlSafeAndUnpadded) {
  EXPECT_EQ(*base64_decode("_-8"), "\xff\xef");
  EXPECT_EQ(*base64_decode("/+8="), "\xff\xef");
  EXPECT_EQ(*base64_decode("Zm8"), "fo");
  EXPECT_EQ(base64url_encode("\xff\xef"), "_-8");
}

TEST(Base64, RejectsGarbage) {
  for (const char* bad : {"Zm9v!", "Z", "Zg=a", "Zm9=v", "Zh==", "Zm9vY===", " Zm9v"}) {
    auto r = base64_decode(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.error(), core::error::invalid_encoding);
    }
  }
}

TEST(Hex, RoundTripsAndRejectsGarbage) {
  EXPECT_EQ(hex_encode(std::string_view("\x00\xab\xff", 3)), "00abff");
  EXPECT_EQ(*hex_decode("00ABff"), std::string("\x00\xab\xff", 3));
  EXPECT_FALSE(hex_decode("abc"));
  EXPECT_FALSE(hex_decode("zz"));
}

TEST(Sha256, MatchesKnownDigestAndCanonicalHexOnly) {
  const std::string abc = hex_encode(sha256("abc"));
  EXPECT_EQ(abc, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto parsed = parse_sha256_hex(abc);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, sha256("abc"));
  std::string upper = abc;
  upper[0] = 'B';
  EXPECT_FALSE(parse_sha256_hex(upper));
  EXPECT_FALSE(parse_sha256_hex(abc.substr(1)));
}

TEST(ConstantTimeEqual, ComparesContentAndLength) {
  EXPECT_TRUE(constant_time_equal("secret", "secret"));
  EXPECT_FALSE(constant_time_equal("secret", "secreT"));
  EXPECT_FALSE(constant_time_equal("secret", "secret!"));
}

TEST(RandomBytes, AreRandom) {
  auto a = random_bytes(32);
  auto b = random_bytes(32);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->size(), 32u);
  EXPECT_NE(*a, *b);
}

}  // namespace
}  // namespace fwdepot
