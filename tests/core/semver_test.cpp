// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/semver.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace fwdepot {
namespace {

Version v(std::string_view text) {
  auto parsed = Version::parse(text);
  EXPECT_TRUE(parsed) << text;
  return parsed ? *parsed : Version();
}

TEST(Version, ParsesAllParts) {
  const Version x = v("1.22.333-alpha.1+build.5");
  EXPECT_EQ(x.major(), 1u);
  EXPECT_EQ(x.minor(), 22u);
  EXPECT_EQ(x.patch(), 333u);
  EXPECT_EQ(x.prerelease(), (std::vector<std::string>{"alpha", "1"}));
  EXPECT_EQ(x.build(), "build.5");
  EXPECT_EQ(x.to_string(), "1.22.333-alpha.1+build.5");
}

TEST(Version, OrdersTheSpecExample) {
  // SemVer 2.0.0, item 11: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta <
  // 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0.
  const std::vector<std::string> ordered = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
                                            "1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
                                            "1.0.0-rc.1",  "1.0.0"};
  for (std::size_t i = 0; i < ordered.size(); ++i) {
    for (std::size_t j = 0; j < ordered.size(); ++j) {
      const auto expected = i <=> j;
      EXPECT_EQ(v(ordered[i]) <=> v(ordered[j]), expected) << ordered[i] << " vs " << ordered[j];
    }
  }
}

TEST(Version, ComparesNumericPartsNumerically) {
  EXPECT_LT(v("1.0.0"), v("2.0.0"));
  EXPECT_LT(v("2.0.0"), v("2.1.0"));
  EXPECT_LT(v("2.1.0"), v("2.1.1"));
  EXPECT_LT(v("1.9.0"), v("1.10.0"));
  EXPECT_LT(v("1.0.0-2"), v("1.0.0-10"));
  EXPECT_LT(v("1.0.0-999"), v("1.0.0-a"));
  // Identifiers longer than 64 bits still compare numerically.
  EXPECT_LT(v("1.0.0-99999999999999999999"), v("1.0.0-100000000000000000000"));
}

TEST(Version, IgnoresBuildMetadataInPrecedence) {
  EXPECT_EQ(v("1.0.0+a") <=> v("1.0.0+b"), std::strong_ordering::equal);
  EXPECT_NE(v("1.0.0+a").to_string(), v("1.0.0+b").to_string());
}

TEST(Version, RejectsWhatTheSpecForbids) {
  for (const char* bad :
       {"",         "1",          "1.2",       "1.2.3.4",   "01.2.3",
        "1.02.3",   "1.2.03",     "v1.2.3",    "1.2.3-",    "1.2.3+",
        "1.2.3-01", "1.2.3-a..b", "1.2.3-a_b", " 1.2.3",    "1.2.3 ",
        "-1.2.3",   "1.2.-3",     "1.2.3-a+",  "1.2.3+a+b", "18446744073709551616.0.0"}) {
    auto parsed = Version::parse(bad);
    EXPECT_FALSE(parsed) << "'" << bad << "' parsed";
    if (!parsed) {
      EXPECT_EQ(parsed.error(), core::error::invalid_version);
    }
  }
  EXPECT_TRUE(Version::parse("18446744073709551615.0.0"));
  EXPECT_TRUE(Version::parse("1.2.3+001"));  // leading zeros are fine in build metadata
  EXPECT_TRUE(Version::parse("1.2.3-0a"));   // and in alphanumeric identifiers
  EXPECT_FALSE(Version::parse(std::string(200, '1') + ".0.0"));
}

}  // namespace
}  // namespace fwdepot
