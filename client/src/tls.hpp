// SPDX-License-Identifier: Apache-2.0
// SecurityConfig → OpenSSL: one context per configuration, per-connection host checks, and the
// pinned-key check after the handshake.
#pragma once

#include "fwdepot/client/security.hpp"

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string_view>

namespace fwdepot::client {

/// Errors: error::unsupported_protocol (PSK over TLS), error::invalid_argument (unreadable or
/// malformed PEM, a key that does not match the certificate, a wrong key password).
[[nodiscard]] result<std::shared_ptr<boost::asio::ssl::context>> make_tls_context(
    const SecurityConfig& config);

/// Before the handshake: SNI, and the host name or IP address the certificate must carry.
[[nodiscard]] result<void> prepare_connection(SSL* ssl, const SecurityConfig& config,
                                              std::string_view host);

/// After the handshake: the pinned key, if any. Errors: error::server_key_mismatch.
[[nodiscard]] result<void> check_pinned_key(SSL* ssl, const SecurityConfig& config);

}  // namespace fwdepot::client
