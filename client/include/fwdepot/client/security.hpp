// SPDX-License-Identifier: Apache-2.0
// Security configuration per server URI, in the shape of Anjay's anjay_security_config_t:
// certificate mode (trust store, CRLs, client certificate chain and key, server validation,
// an optional pinned server key) or PSK mode, plus TLS version bounds, cipher suites and SNI.
#pragma once

#include "fwdepot/core/error.hpp"

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace fwdepot::client {

/// Where PEM data comes from: a file, a directory of hashed certificates (c_rehash layout; for
/// trust stores only), or bytes in memory.
struct PemSource {
  enum class Kind { file, directory, buffer };
  Kind kind = Kind::buffer;
  std::filesystem::path path;  // file, directory
  std::string pem;             // buffer

  static PemSource from_file(std::filesystem::path p) { return {Kind::file, std::move(p), {}}; }
  static PemSource from_directory(std::filesystem::path p) {
    return {Kind::directory, std::move(p), {}};
  }
  static PemSource from_buffer(std::string pem) { return {Kind::buffer, {}, std::move(pem)}; }
  friend bool operator==(const PemSource&, const PemSource&) = default;
};

struct CertificateSecurity {
  /// Anchors for the server certificate. Empty means the system trust store.
  std::vector<PemSource> trusted_certs;
  /// CRLs of the anchors; when given, every certificate of the chain must be covered.
  std::vector<PemSource> crls;
  /// The device's certificate (chain, leaf first) and its private key.
  std::optional<PemSource> client_cert;
  std::optional<PemSource> client_key;
  std::optional<std::string> client_key_password;
  /// Off only for tests and trust-on-first-use setups that pin the key instead.
  bool server_cert_validation = true;
  /// The server's public key (PEM SubjectPublicKeyInfo). When set, the handshake must present
  /// exactly this key, in addition to (or, without validation, instead of) the chain check.
  std::optional<std::string> pinned_server_public_key;
  friend bool operator==(const CertificateSecurity&, const CertificateSecurity&) = default;
};

/// Pre-shared key mode, for DTLS (CoAPS). The HTTPS transport refuses it.
struct PskSecurity {
  std::string identity;
  std::string key;  // raw bytes; never logged
  friend bool operator==(const PskSecurity&, const PskSecurity&) = default;
};

enum class TlsVersion { tls1_2, tls1_3 };

struct SecurityConfig {
  std::variant<CertificateSecurity, PskSecurity> credentials;
  TlsVersion min_version = TlsVersion::tls1_2;
  std::optional<TlsVersion> max_version;  // none: the newest available
  /// OpenSSL cipher lists. Empty: ECDHE with AES-GCM or ChaCha20-Poly1305 for TLS 1.2, and
  /// OpenSSL's TLS 1.3 defaults.
  std::string tls12_ciphers;
  std::string tls13_ciphersuites;
  /// Server name for SNI and for the certificate check; empty: the URI's host.
  std::optional<std::string> server_name;
  friend bool operator==(const SecurityConfig&, const SecurityConfig&) = default;
};

/// Chooses the security configuration for a URI (a check-in or a download URL), as Anjay's
/// get_security_config does. Return an error to refuse the URI.
using SecurityConfigProvider = std::function<result<SecurityConfig>(std::string_view uri)>;

}  // namespace fwdepot::client
