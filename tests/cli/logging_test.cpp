// SPDX-License-Identifier: Apache-2.0
// JSON log lines: the logfmt messages the server writes, converted field by field, and always
// valid JSON whatever bytes a message carries.
#include "logging.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace fwdepot::cli {
namespace {

namespace json = boost::json;

json::value parsed(std::string_view message) {
  const std::string line = logfmt_to_json("2026-11-30T00:00:00.000Z", "info", message);
  std::error_code ec;
  auto v = json::parse(line, ec);
  EXPECT_FALSE(ec) << line;
  return v;
}

TEST(LoggingTest, FieldsBecomeStringsAfterTheEnvelope) {
  EXPECT_EQ(parsed("request listener=admin status=200 route=/api/v1/images/{id}"),
            json::parse(R"({"ts":"2026-11-30T00:00:00.000Z","level":"info","event":"request",
                            "listener":"admin","status":"200","route":"/api/v1/images/{id}"})"));
}

TEST(LoggingTest, QuotedValuesAreUnescaped) {
  // As server/src/log.hpp quotes values a client controls.
  const auto v = parsed(R"(checkin message="say \"hi\" \\ now\x0a\x1b" who=dev-1)");
  EXPECT_EQ(v.at("message"), "say \"hi\" \\ now\n\x1b");
  EXPECT_EQ(v.at("who"), "dev-1");
}

TEST(LoggingTest, FieldsNeverShadowTheEnvelope) {
  const auto v = parsed("forged level=critical ts=0 event=other msg=x");
  EXPECT_EQ(v.at("level"), "info");
  EXPECT_EQ(v.at("event"), "forged");
  EXPECT_EQ(v.at("level_"), "critical");
  EXPECT_EQ(v.at("ts_"), "0");
  EXPECT_EQ(v.at("msg_"), "x");
}

TEST(LoggingTest, AnythingElseIsKeptWholeAsMsg) {
  for (std::string_view m : {"free text with spaces", "event key=\"unterminated",
                             "event key=\"bad \\q escape\"", "=novalue", "event k=\"v\"tail"}) {
    EXPECT_EQ(parsed(m).at("msg"), json::value(json::string(m))) << m;
  }
  // Well-formed UTF-8 is kept; any other byte becomes U+FFFD: the line stays valid JSON.
  EXPECT_EQ(parsed("ev who=caf\xc3\xa9 m=\xe2\x82\xac").at("who"), json::value("caf\u00e9"));
  EXPECT_EQ(parsed("ev m=\xe2\x82\xac").at("m"), json::value("\u20ac"));
  const std::string binary("raw \xff\xc3\x01 \xed\xa0\x80 bytes", 17);
  EXPECT_EQ(parsed(binary).at("msg"),
            json::value("raw \ufffd\ufffd\u0001 \ufffd\ufffd\ufffd bytes"));
}

}  // namespace
}  // namespace fwdepot::cli
