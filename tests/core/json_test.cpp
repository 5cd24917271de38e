// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/json.hpp"

#include <gtest/gtest.h>

namespace fwdepot {
namespace {

TEST(ParseJsonStrict, AcceptsOrdinaryDocuments) {
  auto v = parse_json_strict(R"({"a":[1,2,{"b":"c"}],"d":null} )");
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_TRUE(v->is_object());
}

TEST(ParseJsonStrict, RejectsDuplicateKeysAtAnyDepth) {
  auto top = parse_json_strict(R"({"a":1,"a":2})");
  ASSERT_FALSE(top);
  EXPECT_EQ(top.error(), core::error::malformed_json);
  EXPECT_NE(top.error().detail.find("'a'"), std::string::npos);
  EXPECT_FALSE(parse_json_strict(R"({"x":{"a":1,"b":{},"a":2}})"));
  // Same key in sibling objects is fine.
  EXPECT_TRUE(parse_json_strict(R"([{"a":1},{"a":2}])"));
  // Escapes do not hide duplicates.
  EXPECT_FALSE(parse_json_strict(R"({"a":1,"\u0061":2})"));
}

TEST(ParseJsonStrict, RejectsTrailingGarbageCommentsAndBadUtf8) {
  EXPECT_EQ(parse_json_strict(R"({"a":1}x)").error(), core::error::malformed_json);
  EXPECT_EQ(parse_json_strict(R"({"a":1}{})").error(), core::error::malformed_json);
  EXPECT_EQ(parse_json_strict(R"({"a":1,})").error(), core::error::malformed_json);
  EXPECT_EQ(parse_json_strict("{\"a\":1 /* c */}").error(), core::error::malformed_json);
  EXPECT_EQ(parse_json_strict("{\"a\":\"\xff\"}").error(), core::error::malformed_json);
  EXPECT_EQ(parse_json_strict("").error(), core::error::malformed_json);
  EXPECT_EQ(parse_json_strict(R"({"a":)").error(), core::error::malformed_json);
}

// Found by fuzz_json: "1e33083" parsed as infinity, which serializes as `Infinity`, not JSON.
TEST(ParseJsonStrict, RejectsNumbersBeyondTheRangeOfADouble) {
  for (const char* text : {"1e33083", "-1e400", "[1E999]", "{\"a\":123456789e400}"}) {
    auto v = parse_json_strict(text);
    ASSERT_FALSE(v) << text;
    EXPECT_EQ(v.error(), core::error::malformed_json) << text;
  }
  EXPECT_TRUE(parse_json_strict("1.7976931348623157e308"));
  EXPECT_TRUE(parse_json_strict("4.9e-324"));
  EXPECT_TRUE(parse_json_strict("1e-400"));  // underflows to 0: still a JSON number
}

TEST(ParseJsonStrict, EnforcesSizeAndDepth) {
  EXPECT_EQ(parse_json_strict(std::string(100, ' ') + "1", {.max_bytes = 50}).error(),
            core::error::document_too_large);
  const std::string deep = std::string(20, '[') + std::string(20, ']');
  EXPECT_EQ(parse_json_strict(deep, {.max_bytes = 1000, .max_depth = 16}).error(),
            core::error::malformed_json);
  EXPECT_TRUE(parse_json_strict(deep, {.max_bytes = 1000, .max_depth = 32}));
}

}  // namespace
}  // namespace fwdepot
