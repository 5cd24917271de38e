// SPDX-License-Identifier: Apache-2.0
#include "service/multipart.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace fwdepot::server {
namespace {

using Parts = std::vector<std::pair<std::string, std::string>>;

// Feeds `body` in chunks of the given sizes (the rest in one piece) and collects the parts.
result<Parts> parse(const std::string& body, const std::vector<std::size_t>& chunks,
                    const std::string& boundary = "XyZ") {
  Parts parts;
  bool open = false;
  MultipartParser parser(
      boundary, {.on_part_begin = [&](std::string_view name, std::string_view) -> result<void> {
                   EXPECT_FALSE(open);
                   open = true;
                   parts.emplace_back(name, "");
                   return {};
                 },
                 .on_part_data = [&](std::string_view b) -> result<void> {
                   EXPECT_TRUE(open);
                   parts.back().second.append(b);
                   return {};
                 },
                 .on_part_end = [&]() -> result<void> {
                   EXPECT_TRUE(open);
                   open = false;
                   return {};
                 }});
  std::size_t pos = 0;
  for (std::size_t n : chunks) {
    n = std::min(n, body.size() - pos);
    if (auto r = parser.feed(std::string_view(body).substr(pos, n)); !r) {
      return r.error();
    }
    pos += n;
  }
  if (auto r = parser.feed(std::string_view(body).substr(pos)); !r) {
    return r.error();
  }
  if (auto r = parser.finish(); !r) {
    return r.error();
  }
  return parts;
}

std::string part(const std::string& name, const std::string& data,
                 const std::string& extra_headers = "") {
  return "--XyZ\r\nContent-Disposition: form-data; name=\"" + name + "\"; filename=\"f.bin\"\r\n" +
         extra_headers + "\r\n" + data + "\r\n";
}

// Payload bytes that look like the start of a delimiter but are not one.
const std::string kTricky = std::string("a\r\n--XyQ\r\n--X\r\r\n-\0b", 20) + "\r\n--Xy";

TEST(MultipartTest, ParsesPartsWhateverTheChunking) {
  const std::string body = "preamble\r\n" + part("manifest", "{\"a\":1}") +
                           part("image", kTricky, "Content-Type: application/octet-stream\r\n") +
                           "--XyZ--\r\nepilogue";
  const Parts expected = {{"manifest", "{\"a\":1}"}, {"image", kTricky}};
  auto whole = parse(body, {});
  ASSERT_TRUE(whole) << whole.error();
  EXPECT_EQ(*whole, expected);
  for (std::size_t split = 1; split < body.size(); ++split) {
    auto r = parse(body, {split});
    ASSERT_TRUE(r) << "split at " << split << ": " << r.error();
    EXPECT_EQ(*r, expected) << "split at " << split;
  }
  auto bytewise = parse(body, std::vector<std::size_t>(body.size(), 1));
  ASSERT_TRUE(bytewise) << bytewise.error();
  EXPECT_EQ(*bytewise, expected);
}

// Found by fuzz_multipart: transport padding longer than the limit was refused when it came in
// small chunks and accepted when it came at once.
TEST(MultipartTest, PaddingAfterADelimiterHasOneLimitWhateverTheChunking) {
  for (const std::size_t pad : {MultipartParser::kMaxPadding, MultipartParser::kMaxPadding + 1,
                                MultipartParser::kMaxPadding + 8}) {
    std::string body = part("a", "x");
    body.insert(5, std::string(pad, '\t'));  // after the first "--XyZ"
    body += "--XyZ--";
    const bool allowed = pad <= MultipartParser::kMaxPadding;
    for (std::size_t chunk = 1; chunk <= body.size(); ++chunk) {
      auto r = parse(body, std::vector<std::size_t>(body.size() / chunk + 1, chunk));
      EXPECT_EQ(static_cast<bool>(r), allowed) << "padding " << pad << ", chunks of " << chunk;
    }
  }
}

TEST(MultipartTest, TruncatedBodiesAreRefusedAtFinish) {
  const std::string body = part("manifest", "{}") + part("image", "0123456789") + "--XyZ--\r\n";
  for (std::size_t cut = 0; cut + 2 < body.size(); ++cut) {
    // Everything short of the closing delimiter "--XyZ--" is an incomplete upload.
    auto r = parse(body.substr(0, cut), {});
    EXPECT_FALSE(r) << "accepted a body cut at " << cut;
    if (!r) {
      EXPECT_EQ(r.error(), core::error::invalid_argument);
    }
  }
}

TEST(MultipartTest, RefusesMalformedParts) {
  const std::string end = "--XyZ--\r\n";
  // No name, no Content-Disposition, not form-data, header block too large, too many parts.
  for (const std::string& body :
       {std::string("--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n") + end,
        std::string("--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n") + end,
        std::string("--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n") + end,
        "--XyZ\r\nX-Pad: " + std::string(9000, 'p') + "\r\n\r\nx\r\n" + end, [] {
          std::string many;
          for (int i = 0; i < 17; ++i) {
            many += part("p" + std::to_string(i), "x");
          }
          return many + "--XyZ--\r\n";
        }()}) {
    auto r = parse(body, {});
    EXPECT_FALSE(r) << body.substr(0, 80);
  }
}

TEST(MultipartTest, HandsOnEachPartsFilenameOrNothing) {
  std::vector<std::pair<std::string, std::string>> seen;
  MultipartParser parser(
      "XyZ",
      {.on_part_begin = [&](std::string_view name, std::string_view filename) -> result<void> {
         seen.emplace_back(name, filename);
         return {};
       },
       .on_part_data = [](std::string_view) -> result<void> { return {}; },
       .on_part_end = []() -> result<void> { return {}; }});
  const std::string body =
      part("image", "x") +
      "--XyZ\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{}\r\n" + "--XyZ--\r\n";
  ASSERT_TRUE(parser.feed(body));
  ASSERT_TRUE(parser.finish());
  const std::vector<std::pair<std::string, std::string>> expected = {{"image", "f.bin"},
                                                                     {"manifest", ""}};
  EXPECT_EQ(seen, expected);
}

TEST(MultipartTest, AHandlerErrorStopsTheParser) {
  MultipartParser parser("XyZ",
                         {.on_part_begin = [](std::string_view, std::string_view) -> result<void> {
                            return Error(core::error::too_many_bytes, "stop");
                          },
                          .on_part_data = [](std::string_view) -> result<void> { return {}; },
                          .on_part_end = []() -> result<void> { return {}; }});
  auto r = parser.feed(part("image", "x"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), core::error::too_many_bytes);
  EXPECT_EQ(parser.feed("more").error(), core::error::too_many_bytes);
}

TEST(MultipartTest, BoundaryComesFromTheContentType) {
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=XyZ"), "XyZ");
  EXPECT_EQ(multipart_boundary("Multipart/Form-Data;boundary=\"a b\""), "a b");
  EXPECT_EQ(multipart_boundary("multipart/form-data; charset=utf-8; boundary=q1"), "q1");
  EXPECT_EQ(multipart_boundary("multipart/mixed; boundary=XyZ"), std::nullopt);
  EXPECT_EQ(multipart_boundary("application/json"), std::nullopt);
  EXPECT_EQ(multipart_boundary("multipart/form-data"), std::nullopt);
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary="), std::nullopt);
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'b')),
            std::nullopt);
}

}  // namespace
}  // namespace fwdepot::server
