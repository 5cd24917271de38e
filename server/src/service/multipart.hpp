// SPDX-License-Identifier: Apache-2.0
// A streaming multipart/form-data parser (RFC 7578): bytes in any chunking, parts out as
// callbacks, constant memory whatever the part sizes.
#pragma once

#include "fwdepot/core/error.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace fwdepot::server {

/// The boundary parameter of a multipart/form-data Content-Type, or nullopt when the type is
/// not multipart/form-data or the boundary is missing or invalid (RFC 2046: 1-70 characters).
[[nodiscard]] std::optional<std::string> multipart_boundary(std::string_view content_type);

class MultipartParser {
 public:
  struct Handlers {
    /// A part begins; `name` is its Content-Disposition form-data name, `filename` the
    /// filename parameter as sent (empty when there is none).
    std::function<result<void>(std::string_view name, std::string_view filename)> on_part_begin;
    /// Body bytes of the current part, in order.
    std::function<result<void>(std::string_view bytes)> on_part_data;
    /// The current part is complete.
    std::function<result<void>()> on_part_end;
  };

  static constexpr std::size_t kMaxHeaderBytes = 8 * 1024;  // per part
  static constexpr std::size_t kMaxParts = 16;
  static constexpr std::size_t kMaxPadding = 64;  // spaces and tabs after a delimiter

  MultipartParser(std::string boundary, Handlers handlers);

  /// Feeds the next bytes of the body. Errors: core::error::invalid_argument for malformed
  /// input (named in the detail), or whatever a handler returned; after an error every call
  /// fails the same way.
  [[nodiscard]] result<void> feed(std::string_view bytes);

  /// The body ended. Errors: core::error::invalid_argument when the closing delimiter has not
  /// been seen (a truncated upload).
  [[nodiscard]] result<void> finish();

 private:
  enum class State { preamble, after_delimiter, headers, body, epilogue };
  result<void> step();
  result<void> fail(std::string why);
  result<void> parse_headers(std::string_view headers);

  std::string delimiter_;  // "\r\n--" + boundary
  Handlers handlers_;
  State state_ = State::preamble;
  std::string buffer_;  // unconsumed bytes: at most one header block or a delimiter's length
  std::size_t parts_ = 0;
  Error failure_;
};

}  // namespace fwdepot::server
