// SPDX-License-Identifier: Apache-2.0
// Why an update cycle failed, as values, and how each maps onto the LwM2M Firmware Update
// object's Update Result, which is what the device reports to the server.
#pragma once

#include "fwdepot/core/error.hpp"

#include <string_view>

namespace fwdepot::client {

/// Failures of the client library. Values are stable; append only.
enum class error {
  ok = 0,
  invalid_argument,      // a caller passed something the contract forbids
  invalid_uri,           // a URL the library cannot use (bad syntax, scheme, host)
  unsupported_protocol,  // a scheme or security mode this transport does not speak
  connection_failed,     // resolve, connect, or the connection dropped (retryable)
  timeout,               // a network step exceeded its deadline (retryable)
  tls_failed,            // the TLS handshake failed: bad server certificate, refused client
  server_key_mismatch,   // the server's public key is not the pinned one
  server_error,          // 5xx or an unusable answer from the server (retryable on 5xx)
  refused,               // 4xx from the server: not offered, not authorized, bad request
  image_changed,         // the payload behind the URL is no longer the one offered
  manifest_untrusted,    // signatures do not meet the device's threshold of trusted keys
  wrong_model,           // the manifest does not list this device's model
  downgrade_refused,     // not newer than the running version, and no downgrade allowed
  offer_mismatch,        // the offer's size or digest differs from the signed manifest
  integrity_failure,     // the payload's size or SHA-256 differs from the manifest
  not_enough_storage,    // for handlers: the package does not fit
  out_of_memory,         // for handlers
  update_failed,         // for handlers: writing or installing failed
};
const boost::system::error_category& error_category() noexcept;
inline boost::system::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// The LwM2M Update Result name ("connection_lost", "integrity_failure", ...) that reports
/// `e` to the server. Errors of other modules map onto the nearest result.
[[nodiscard]] std::string_view lwm2m_result(const Error& e);

/// Whether retrying the same step may succeed (lost connections, timeouts, 5xx).
[[nodiscard]] bool is_transient(const Error& e);

}  // namespace fwdepot::client

template <>
struct boost::system::is_error_code_enum<fwdepot::client::error> : std::true_type {};
