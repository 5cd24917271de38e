// SPDX-License-Identifier: Apache-2.0
// Signing keys: generation, PEM import/export, key ids, sign and verify.
//
// The signature scheme is bound to the key, never chosen by the message: ECDSA P-256 signs
// SHA-256 (DER signature), Ed25519 signs the message itself, an RSA key signs with RSASSA-PKCS1
// v1.5 / SHA-256, and an RSA-PSS key (its SubjectPublicKeyInfo carries id-RSASSA-PSS) signs with
// PSS / SHA-256 / MGF1-SHA-256 / 32-byte salt. A verifier therefore cannot be talked into a
// weaker scheme by the envelope it is checking.
#pragma once

#include "fwdepot/core/error.hpp"
#include "fwdepot/core/openssl.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace fwdepot {

enum class KeyType { ecdsa_p256, ed25519, rsa_2048, rsa_3072, rsa_pss_2048, rsa_pss_3072 };

/// "ecdsa-p256", "ed25519", "rsa-2048", "rsa-3072", "rsa-pss-2048", "rsa-pss-3072".
[[nodiscard]] std::string_view to_string(KeyType type);
/// Inverse of to_string. Errors: core::error::unsupported_key_type.
[[nodiscard]] result<KeyType> parse_key_type(std::string_view name);

/// A public key from the allowed set (see the file comment). Copyable; shares the EVP_PKEY.
class PublicKey {
 public:
  /// Parses a PEM "PUBLIC KEY" (SubjectPublicKeyInfo). Errors: core::error::invalid_key,
  /// core::error::unsupported_key_type (e.g. P-384, RSA below 2048 bits).
  [[nodiscard]] static result<PublicKey> from_pem(std::string_view pem);
  /// Takes ownership of `pkey` after checking its type. Same errors as from_pem.
  [[nodiscard]] static result<PublicKey> from_pkey(openssl::PkeyPtr pkey);

  [[nodiscard]] KeyType type() const { return type_; }
  /// Hex SHA-256 of the SubjectPublicKeyInfo DER: the key id used in DSSE signatures.
  [[nodiscard]] const std::string& key_id() const { return key_id_; }
  [[nodiscard]] std::string to_pem() const;
  /// Borrowed; valid as long as this object (or a copy) lives.
  [[nodiscard]] EVP_PKEY* get() const { return pkey_.get(); }

  /// True only if `signature` is a valid signature of `message` under this key's scheme.
  [[nodiscard]] bool verify(std::string_view message, std::string_view signature) const;

 private:
  PublicKey(std::shared_ptr<EVP_PKEY> pkey, KeyType type, std::string key_id)
      : pkey_(std::move(pkey)), type_(type), key_id_(std::move(key_id)) {}
  std::shared_ptr<EVP_PKEY> pkey_;
  KeyType type_;
  std::string key_id_;
};

/// A private key from the allowed set. Move-only: private keys are not casually duplicated.
class PrivateKey {
 public:
  /// A fresh key from OpenSSL's DRBG. Errors: core::error::crypto_failure.
  [[nodiscard]] static result<PrivateKey> generate(KeyType type);
  /// Parses a PEM private key (PKCS#8 or traditional), decrypting it with `password` if given.
  /// Errors: core::error::invalid_key (also for a wrong password),
  /// core::error::unsupported_key_type.
  [[nodiscard]] static result<PrivateKey> from_pem(std::string_view pem,
                                                   std::optional<std::string_view> password = {});

  [[nodiscard]] KeyType type() const { return public_key_.type(); }
  [[nodiscard]] const PublicKey& public_key() const { return public_key_; }
  [[nodiscard]] const std::string& key_id() const { return public_key_.key_id(); }
  /// Unencrypted PKCS#8 PEM, or encrypted with AES-256-CBC when `password` is given.
  [[nodiscard]] result<std::string> to_pem(std::optional<std::string_view> password = {}) const;
  /// Borrowed; valid as long as this object lives.
  [[nodiscard]] EVP_PKEY* get() const { return pkey_.get(); }

  /// Signs `message` with this key's scheme. Errors: core::error::crypto_failure.
  [[nodiscard]] result<std::string> sign(std::string_view message) const;

 private:
  PrivateKey(openssl::PkeyPtr pkey, PublicKey pub)
      : pkey_(std::move(pkey)), public_key_(std::move(pub)) {}
  openssl::PkeyPtr pkey_;
  PublicKey public_key_;
};

}  // namespace fwdepot
