// SPDX-License-Identifier: Apache-2.0
#include "https/response_head.hpp"

#include <boost/beast/http/status.hpp>

#include <charconv>

namespace fwdepot::server {
namespace {

// The admin listener serves the web UI, so every answer carries the browser protections: no
// inline or foreign scripts, no framing, no referrer leaks.
constexpr std::string_view kCommonHeaders =
    "Server: fwdepot\r\n"
    "Cache-Control: no-store\r\n"
    "X-Content-Type-Options: nosniff\r\n";
constexpr std::string_view kAdminHeaders =
    "Strict-Transport-Security: max-age=31536000\r\n"
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Cross-Origin-Opener-Policy: same-origin\r\n";

void append_number(std::string& out, std::uint64_t n) {
  char digits[20];
  const auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
  out.append(digits, end);
}

}  // namespace

ResponseHead::ResponseHead(int status, Listener l) : status_(status) {
  const auto reason =
      boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status));
  text_.reserve(l == Listener::admin ? 512 : 256);
  text_ += "HTTP/1.1 ";
  append_number(text_, static_cast<std::uint64_t>(status));
  text_ += ' ';
  text_.append(reason.data(), reason.size());
  text_ += "\r\n";
  text_ += kCommonHeaders;
  if (l == Listener::admin) {
    text_ += kAdminHeaders;
  }
}

ResponseHead& ResponseHead::set(std::string_view name, std::string_view value) {
  if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    return *this;
  }
  text_ += name;
  text_ += ": ";
  text_ += value;
  text_ += "\r\n";
  return *this;
}

std::string ResponseHead::finish(std::uint64_t content_length, bool keep_alive) {
  if (has_body(status_)) {
    text_ += "Content-Length: ";
    append_number(text_, content_length);
    text_ += "\r\n";
  }
  if (!keep_alive) {
    text_ += "Connection: close\r\n";
  }
  text_ += "\r\n";
  return std::move(text_);
}

std::string_view continue_head() { return "HTTP/1.1 100 Continue\r\n\r\n"; }

}  // namespace fwdepot::server
