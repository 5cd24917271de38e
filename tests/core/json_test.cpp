// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/json.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

namespace fwdepot {
namespace {

TEST(ParseJsonStrict, AcceptsOrdinaryDocuments) {
  auto v = parse_json_strict(R"({"a":[1,2,{"b":"c"}],"d":null} )");
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_TRUE(v->is_object());
}

TEST(ParseJsonStrict, BuildsTheValueJsonParseWould) {
  const std::string text =
      R"({"s":"plain","e":"tab\there \u00e9 \"q\" \\","k\u0065y":[1,-2,18446744073709551615,)"
      R"(2.5e-3,true,false,null,{},[]],"nested":{"a":{"b":[{"c":"d"}]}},"long":")" +
      std::string(5000, 'x') + "\\n" + std::string(5000, 'y') + R"("})";
  auto v = parse_json_strict(text, {.max_bytes = 20000});
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(*v, boost::json::parse(text));
  EXPECT_EQ(v->at("key").as_array()[2].as_uint64(), 18446744073709551615ULL);
  EXPECT_EQ(v->at("e").as_string(), "tab\there \xc3\xa9 \"q\" \\");
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
