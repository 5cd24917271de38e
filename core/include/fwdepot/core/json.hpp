// SPDX-License-Identifier: Apache-2.0
// Strict JSON for untrusted documents (manifests, envelopes, check-ins, API bodies).
#pragma once

#include "fwdepot/core/error.hpp"

#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fwdepot {

struct JsonLimits {
  std::size_t max_bytes = 64 * 1024;  // the whole document, in bytes
  std::size_t max_depth = 16;         // nesting of arrays and objects
};

/// Parses one JSON document, refusing what Boost.JSON alone would let through: duplicate keys
/// in an object (which a second parser could resolve differently than we did), comments,
/// trailing commas, invalid UTF-8, anything but whitespace after the value, and documents over
/// `limits`. The value's memory comes from `sp` (the default resource when null): a caller
/// that parses per request can lend it a buffer on its stack. Errors:
/// core::error::document_too_large, core::error::malformed_json (with the reason).
[[nodiscard]] result<boost::json::value> parse_json_strict(std::string_view text,
                                                           const JsonLimits& limits = {},
                                                           boost::json::storage_ptr sp = {});

/// Field accessors for validating parsed objects. Each returns core::error::`kind` (the caller's
/// choice, e.g. invalid_manifest) with "field 'NAME': ..." on a missing or mistyped field.
namespace json_field {
[[nodiscard]] result<std::string_view> get_string(const boost::json::object& o,
                                                  std::string_view name, core::error kind);
[[nodiscard]] result<std::optional<std::string_view>> get_optional_string(
    const boost::json::object& o, std::string_view name, core::error kind);
[[nodiscard]] result<std::uint64_t> get_uint64(const boost::json::object& o, std::string_view name,
                                               core::error kind);
[[nodiscard]] result<const boost::json::array*> get_array(const boost::json::object& o,
                                                          std::string_view name, core::error kind);
/// Fails if `o` has a key outside `allowed`, so that a misspelt optional field is an error
/// instead of being silently ignored.
[[nodiscard]] result<void> reject_unknown(const boost::json::object& o,
                                          std::initializer_list<std::string_view> allowed,
                                          core::error kind);
}  // namespace json_field

}  // namespace fwdepot
