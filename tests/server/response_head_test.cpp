// SPDX-License-Identifier: Apache-2.0
#include "https/response_head.hpp"

#include <gtest/gtest.h>

namespace fwdepot::server {
namespace {

TEST(ResponseHeadTest, ADeviceAnswerCarriesTheCommonHeadersItsFieldsAndItsLength) {
  ResponseHead head(200, Listener::device);
  head.set("Content-Type", "application/json");
  EXPECT_EQ(head.finish(15, true),
            "HTTP/1.1 200 OK\r\n"
            "Server: fwdepot\r\n"
            "Cache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 15\r\n"
            "\r\n");
}

TEST(ResponseHeadTest, AnAdminAnswerCarriesTheBrowserProtections) {
  const std::string text = ResponseHead(404, Listener::admin).finish(0, true);
  EXPECT_TRUE(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
  for (const char* line :
       {"\r\nStrict-Transport-Security: max-age=31536000\r\n",
        "\r\nContent-Security-Policy: default-src 'none'; script-src 'self'; ",
        "frame-ancestors 'none'\r\n", "\r\nX-Frame-Options: DENY\r\n",
        "\r\nReferrer-Policy: no-referrer\r\n", "\r\nCross-Origin-Opener-Policy: same-origin\r\n",
        "\r\nContent-Length: 0\r\n\r\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
  EXPECT_EQ(ResponseHead(404, Listener::device).finish(0, true).find("Content-Security-Policy"),
            std::string::npos);
}

TEST(ResponseHeadTest, NoLengthWhereTheStatusForbidsABodyAndCloseWhenAsked) {
  EXPECT_EQ(ResponseHead(204, Listener::device).finish(0, false),
            "HTTP/1.1 204 No Content\r\n"
            "Server: fwdepot\r\n"
            "Cache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            "Connection: close\r\n"
            "\r\n");
  EXPECT_EQ(ResponseHead(304, Listener::device).finish(0, true).find("Content-Length"),
            std::string::npos);
  EXPECT_EQ(continue_head(), "HTTP/1.1 100 Continue\r\n\r\n");
}

TEST(ResponseHeadTest, AValueThatWouldSplitTheHeadIsNeverSent) {
  ResponseHead head(200, Listener::device);
  head.set("ETag", "\"a\"\r\nSet-Cookie: x=1")
      .set("Content-Range", std::string("bytes 0-1/2\0X", 13))
      .set("Accept-Ranges", "bytes");
  const std::string text = head.finish(2, true);
  EXPECT_EQ(text.find("Set-Cookie"), std::string::npos);
  EXPECT_EQ(text.find("ETag"), std::string::npos);
  EXPECT_EQ(text.find("Content-Range"), std::string::npos);
  EXPECT_NE(text.find("\r\nAccept-Ranges: bytes\r\nContent-Length: 2\r\n\r\n"), std::string::npos);
}

}  // namespace
}  // namespace fwdepot::server
