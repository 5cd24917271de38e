// SPDX-License-Identifier: Apache-2.0
// The head of an HTTP/1.1 response, written straight into one string.
#pragma once

#include "https/listener.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fwdepot::server {

/// Builds a response head: the status line, the headers every answer of `l` carries (the
/// browser protections on the admin listener), the caller's fields, and the framing.
///
/// Why not Beast's serializer: a check-in's answer spent more of the serving thread in
/// `http::fields` (one allocation per field) and the serializer's buffer views than in
/// encrypting and sending it. This is one string, reserved once.
class ResponseHead {
 public:
  ResponseHead(int status, Listener l);

  /// Adds a field. Values come from the server itself (types, validators, ranges); one that
  /// holds CR, LF or NUL would split the head, so it is dropped (never sent) rather than
  /// trusted.
  ResponseHead& set(std::string_view name, std::string_view value);

  /// Whether an answer with `status` may carry a body: never 1xx, 204 and 304 (RFC 9110
  /// section 6.4.1), which also go without a length.
  [[nodiscard]] static bool has_body(int status) {
    return status >= 200 && status != 204 && status != 304;
  }

  /// The finished head: Content-Length (only where has_body, RFC 9110 section 8.6),
  /// "Connection: close" unless `keep_alive`, and the empty line.
  /// The head is moved out: call it last.
  [[nodiscard]] std::string finish(std::uint64_t content_length, bool keep_alive);

 private:
  std::string text_;
  int status_;
};

/// "HTTP/1.1 100 Continue" and nothing else.
[[nodiscard]] std::string_view continue_head();

}  // namespace fwdepot::server
