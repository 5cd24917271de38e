// SPDX-License-Identifier: Apache-2.0
// fwdepot's PKI: a certificate authority (ECDSA P-256) that issues server and device
// certificates and signs CRLs, plus PEM loading and chain verification.
//
// Device certificates carry the device id as subject CN and its model as subject OU, with
// extendedKeyUsage clientAuth. Serial numbers are 128-bit random positive integers. All times are
// unix seconds passed in by the caller: nothing here reads the clock, so tests are exact.
#pragma once

#include "fwdepot/core/error.hpp"
#include "fwdepot/core/keys.hpp"
#include "fwdepot/core/openssl.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fwdepot::certs {

enum class error {
  ok = 0,
  invalid_certificate,  // not a PEM certificate, or unusable
  invalid_crl,          // not a PEM CRL, or not signed by the CA
  invalid_name,         // a DNS name, IP address, device id or model we cannot put in a cert
  key_mismatch,         // the private key does not belong to the certificate
  expired,              // now is after notAfter
  not_yet_valid,        // now is before notBefore
  revoked,              // listed on the CRL
  untrusted,            // no chain to the trust anchor (another CA, bad signature)
  wrong_usage,          // missing the extended key usage this role needs
  crl_stale,            // the CRL's nextUpdate has passed (or thisUpdate is in the future)
  crypto_failure,       // OpenSSL failed where it should not
};

const boost::system::error_category& error_category() noexcept;
inline boost::system::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// An X.509 certificate. Copies share the underlying X509 (reference counted).
class Certificate {
 public:
  /// The first certificate in `pem`. Errors: error::invalid_certificate.
  [[nodiscard]] static result<Certificate> from_pem(std::string_view pem);
  /// Every certificate in `pem`, in order; at least one. Errors: error::invalid_certificate.
  [[nodiscard]] static result<std::vector<Certificate>> chain_from_pem(std::string_view pem);
  /// Takes ownership of `x509` (must not be null).
  explicit Certificate(openssl::X509Ptr x509);

  [[nodiscard]] std::string to_pem() const;
  [[nodiscard]] std::string subject_common_name() const;
  /// The subject OU: a device certificate's model; empty when absent.
  [[nodiscard]] std::string subject_model() const;
  /// Lower-case hex, no leading zeros.
  [[nodiscard]] std::string serial_hex() const;
  [[nodiscard]] std::int64_t not_before() const;
  [[nodiscard]] std::int64_t not_after() const;
  [[nodiscard]] std::vector<std::string> dns_names() const;
  [[nodiscard]] std::vector<std::string> ip_addresses() const;
  /// Errors: core::error::unsupported_key_type for keys outside fwdepot's set.
  [[nodiscard]] result<PublicKey> public_key() const;
  /// Borrowed; valid while this object (or a copy) lives.
  [[nodiscard]] X509* get() const { return x509_.get(); }

 private:
  std::shared_ptr<X509> x509_;
};

/// A certificate revocation list. Copies share the underlying X509_CRL.
class Crl {
 public:
  /// Errors: error::invalid_crl.
  [[nodiscard]] static result<Crl> from_pem(std::string_view pem);
  explicit Crl(openssl::X509CrlPtr crl);

  [[nodiscard]] std::string to_pem() const;
  [[nodiscard]] bool is_revoked(std::string_view serial_hex) const;
  [[nodiscard]] std::size_t revoked_count() const;
  [[nodiscard]] std::int64_t this_update() const;
  [[nodiscard]] std::int64_t next_update() const;
  /// The cRLNumber extension; 0 when absent.
  [[nodiscard]] std::uint64_t number() const;
  [[nodiscard]] X509_CRL* get() const { return crl_.get(); }

 private:
  std::shared_ptr<X509_CRL> crl_;
};

struct RevokedEntry {
  std::string serial_hex;
  std::int64_t revoked_at = 0;  // unix seconds
};

/// Checks names for a server certificate without issuing one, so callers can refuse bad input
/// before they create anything. Errors: error::invalid_name (none given, a bad DNS name or IP).
[[nodiscard]] result<void> validate_server_names(std::span<const std::string> dns_names,
                                                 std::span<const std::string> ip_addresses);

/// What a verified device certificate says about its holder.
struct DeviceIdentity {
  std::string device_id;  // subject CN
  std::string model;      // subject OU, may be empty for certificates from other CAs
  std::string serial_hex;
};

class CertificateAuthority {
 public:
  /// A new self-signed CA with a fresh P-256 key, valid from `now` for `validity_days`.
  /// Errors: error::crypto_failure.
  [[nodiscard]] static result<CertificateAuthority> create(std::string_view common_name,
                                                           std::int64_t now, int validity_days);
  /// Loads a CA. Errors: error::invalid_certificate, core::error::invalid_key,
  /// error::key_mismatch, error::wrong_usage (the certificate is not a CA).
  [[nodiscard]] static result<CertificateAuthority> from_pem(std::string_view cert_pem,
                                                             std::string_view key_pem);

  [[nodiscard]] const Certificate& certificate() const { return cert_; }
  [[nodiscard]] const PrivateKey& key() const { return key_; }

  /// A TLS server certificate with the given DNS and IP subjectAltNames (at least one in all),
  /// extendedKeyUsage serverAuth. CN is the first DNS name, else the first IP.
  /// Errors: error::invalid_name (empty list, bad IP or DNS name), error::crypto_failure.
  [[nodiscard]] result<Certificate> issue_server(const PublicKey& subject_key,
                                                 std::span<const std::string> dns_names,
                                                 std::span<const std::string> ip_addresses,
                                                 std::int64_t now, int validity_days) const;

  /// A device certificate: CN = `device_id`, OU = `model` (omitted when empty), O = "fwdepot
  /// device", extendedKeyUsage clientAuth. Errors: error::invalid_name (see
  /// validate_identifier), error::crypto_failure.
  [[nodiscard]] result<Certificate> issue_device(const PublicKey& subject_key,
                                                 std::string_view device_id, std::string_view model,
                                                 std::int64_t now, int validity_days) const;

  /// A CRL listing `revoked`, valid from `now` for `next_update_days`, with cRLNumber `number`
  /// (callers keep it increasing so that relying parties can tell newer from older).
  /// Errors: error::invalid_name (bad serial), error::crypto_failure.
  [[nodiscard]] result<Crl> make_crl(std::span<const RevokedEntry> revoked, std::uint64_t number,
                                     std::int64_t now, int next_update_days) const;

 private:
  CertificateAuthority(Certificate cert, PrivateKey key)
      : cert_(std::move(cert)), key_(std::move(key)) {}
  Certificate cert_;
  PrivateKey key_;
};

/// Verifies a device certificate at time `now` against `anchor` (the device CA), optionally via
/// `intermediates` and with `crl` (issued by the CA; a stale CRL fails closed).
/// Errors tell the cases apart: error::expired, error::not_yet_valid, error::revoked,
/// error::untrusted, error::wrong_usage (no clientAuth), error::crl_stale. If a certificate is
/// both revoked and expired, expired is reported: OpenSSL checks validity before revocation.
[[nodiscard]] result<DeviceIdentity> verify_device_certificate(
    const Certificate& leaf, std::span<const Certificate> intermediates, const Certificate& anchor,
    const Crl* crl, std::int64_t now);

/// The same for a server certificate (serverAuth), optionally checking that it is valid for
/// `host` (a DNS name or an IP address literal). Errors as above, plus error::invalid_name when
/// `host` does not match.
[[nodiscard]] result<void> verify_server_certificate(const Certificate& leaf,
                                                     const Certificate& anchor,
                                                     std::string_view host, std::int64_t now);

}  // namespace fwdepot::certs

template <>
struct boost::system::is_error_code_enum<fwdepot::certs::error> : std::true_type {};
