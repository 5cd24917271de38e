// SPDX-License-Identifier: Apache-2.0
// Error values for every fallible fwdepot call.
//
// Each module declares an `enum class error` with its own category (as Beast's http/error.hpp
// does), and every fallible function returns `fwdepot::result<T>`: a boost::system::result whose
// error carries the code *and* one line of context ("field 'version': not a string"), because a
// bare code cannot tell an operator which field or file was wrong. The detail never contains
// secrets (keys, tokens, PSKs); callers that format one must make sure of that.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <iosfwd>
#include <string>
#include <type_traits>
#include <utility>

namespace fwdepot {

/// An error code plus a human-readable detail. Cheap to move; copied only on failure paths.
struct Error {
  boost::system::error_code code;
  std::string detail;  // context for humans; empty when the code says it all

  Error() = default;
  Error(boost::system::error_code c, std::string d = {}) : code(c), detail(std::move(d)) {}
  template <class Enum>
  requires boost::system::is_error_code_enum<Enum>::value Error(Enum e, std::string d = {})
      : code(make_error_code(e)), detail(std::move(d)) {}

  /// "<code message>: <detail>", or just the code's message.
  [[nodiscard]] std::string message() const;

  /// Compares the code only: tests and callers branch on what failed, not on its wording.
  /// Hidden friends, so that they never join overload resolution for `error_code == enum`.
  friend bool operator==(const Error& e, const boost::system::error_code& c) { return e.code == c; }
  template <class Enum>
  requires boost::system::is_error_code_enum<Enum>::value friend bool operator==(const Error& e,
                                                                                 Enum c) {
    return e.code == make_error_code(c);
  }
};

/// Prints message(); lets test frameworks show what failed.
std::ostream& operator<<(std::ostream& os, const Error& e);

/// Called by result<T>::value() on an error; throws boost::system::system_error with the detail.
[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

template <class T>
using result = boost::system::result<T, Error>;

namespace core {

/// Failures of the core module. Values are stable; append only.
enum class error {
  ok = 0,
  invalid_argument,             // a caller passed something the contract forbids
  malformed_json,               // not JSON, duplicate keys, trailing garbage, too deep
  document_too_large,           // over the documented size limit
  invalid_envelope,             // DSSE envelope shape or encoding is wrong
  wrong_payload_type,           // envelope payloadType is not the manifest type
  invalid_manifest,             // manifest field missing, mistyped or out of range
  unsupported_schema,           // manifest schema version we do not know
  invalid_version,              // not SemVer 2.0
  invalid_key,                  // key material could not be parsed or has the wrong type
  unsupported_key_type,         // key algorithm outside the allowed set
  signature_threshold_not_met,  // fewer than k distinct trusted keys signed
  size_mismatch,                // byte count differs from the manifest
  digest_mismatch,              // SHA-256 differs from the manifest
  too_many_bytes,               // more bytes than the manifest's size
  invalid_encoding,             // bad hex or base64
  crypto_failure,               // OpenSSL failed where it should not (out of memory, ...)
};

const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace core
}  // namespace fwdepot

template <>
struct boost::system::is_error_code_enum<fwdepot::core::error> : std::true_type {};
