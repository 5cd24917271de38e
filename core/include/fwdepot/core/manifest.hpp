// SPDX-License-Identifier: Apache-2.0
// The signed firmware manifest: a JSON document inside a DSSE envelope
// (https://github.com/secure-systems-lab/dsse), signed by one or more release keys.
//
// Limits (documented in docs/security.md): an envelope is at most kMaxEnvelopeBytes of JSON with
// at most kMaxSignatures signatures; the manifest payload is at most kMaxManifestBytes; a
// manifest lists at most kMaxModels models; its description is at most kMaxDescriptionBytes.
#pragma once

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/error.hpp"
#include "fwdepot/core/keys.hpp"
#include "fwdepot/core/semver.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fwdepot {

inline constexpr std::string_view kManifestPayloadType = "application/vnd.fwdepot.manifest+json";
inline constexpr std::int64_t kManifestSchema = 1;
inline constexpr std::size_t kMaxEnvelopeBytes = 64 * 1024;
inline constexpr std::size_t kMaxManifestBytes = 16 * 1024;
inline constexpr std::size_t kMaxSignatures = 16;
inline constexpr std::size_t kMaxModels = 64;
inline constexpr std::size_t kMaxDescriptionBytes = 4096;
/// Largest image a manifest may describe: 2^53 - 1, the largest integer every JSON parser reads
/// exactly.
inline constexpr std::uint64_t kMaxImageBytes = (std::uint64_t{1} << 53) - 1;

struct Manifest {
  std::string name;                 // an identifier (see ids.hpp)
  Version version;                  // SemVer 2.0
  std::vector<std::string> models;  // identifiers, at least one, no duplicates
  std::uint64_t size_bytes = 0;     // exact payload length, 1..kMaxImageBytes
  Sha256Digest sha256{};            // of the payload
  std::string created;              // RFC 3339 UTC, "YYYY-MM-DDTHH:MM:SSZ"
  std::string description;          // optional, empty when absent

  /// Canonical JSON (fixed key order, no whitespace). parse_manifest(to_json()) == *this.
  [[nodiscard]] std::string to_json() const;
  [[nodiscard]] bool lists_model(std::string_view model) const;
  /// Field-wise equality; versions compare by their full text, build metadata included.
  friend bool operator==(const Manifest& a, const Manifest& b);
};

/// Parses and validates a manifest payload. Rejects unknown schema versions
/// (core::error::unsupported_schema), missing, mistyped, unknown or out-of-range fields
/// (core::error::invalid_manifest), bad JSON including duplicate keys and trailing data
/// (core::error::malformed_json) and documents over kMaxManifestBytes
/// (core::error::document_too_large). The detail names the offending field.
[[nodiscard]] result<Manifest> parse_manifest(std::string_view json);

struct Signature {
  std::string key_id;  // hex SHA-256 of the signer's SubjectPublicKeyInfo; may be empty (a hint)
  std::string sig;     // raw signature bytes
};

struct Envelope {
  std::string payload_type;
  std::string payload;  // raw bytes (the manifest JSON), already base64-decoded
  std::vector<Signature> signatures;

  /// The DSSE JSON serialisation (standard base64).
  [[nodiscard]] std::string to_json() const;
};

/// Parses a DSSE envelope. Errors: core::error::document_too_large (over kMaxEnvelopeBytes),
/// core::error::malformed_json, core::error::invalid_envelope (shape, base64, no signatures,
/// more than kMaxSignatures).
[[nodiscard]] result<Envelope> parse_envelope(std::string_view json);

/// DSSE v1 pre-authentication encoding: "DSSEv1 <len(type)> <type> <len(body)> <body>".
/// This, never the bare payload, is what gets signed, so that a signature over one payload type
/// cannot be replayed as another.
[[nodiscard]] std::string pre_authentication_encoding(std::string_view payload_type,
                                                      std::string_view payload);

/// Signs `manifest` with every key in `keys` (at least one, no key twice).
/// Errors: core::error::invalid_argument, core::error::crypto_failure.
[[nodiscard]] result<Envelope> sign_manifest(const Manifest& manifest,
                                             std::span<const PrivateKey* const> keys);

/// A manifest whose envelope met the signature threshold.
struct VerifiedManifest {
  Manifest manifest;
  std::vector<std::string> signer_key_ids;  // the distinct trusted keys whose signatures held
};

/// Verifies an envelope against `trusted` keys: at least `threshold` distinct trusted keys must
/// have a valid signature over the PAE. A signature by an untrusted key, an invalid one, or a
/// second one by a key already counted never counts. Only after the threshold is met is the
/// payload parsed as a manifest. Errors: core::error::invalid_argument (threshold 0 or above the
/// number of distinct trusted keys), core::error::wrong_payload_type,
/// core::error::signature_threshold_not_met (the detail says how many held, and why the others
/// did not), and the errors of parse_manifest.
[[nodiscard]] result<VerifiedManifest> verify_envelope(const Envelope& envelope,
                                                       std::span<const PublicKey> trusted,
                                                       std::size_t threshold);

/// parse_envelope followed by verify_envelope.
[[nodiscard]] result<VerifiedManifest> verify_envelope_json(std::string_view envelope_json,
                                                            std::span<const PublicKey> trusted,
                                                            std::size_t threshold);

}  // namespace fwdepot
