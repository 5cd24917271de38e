// SPDX-License-Identifier: Apache-2.0
// Hex, base64 and SHA-256 helpers shared by every module.
#pragma once

#include "fwdepot/core/error.hpp"

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace fwdepot {

using Sha256Digest = std::array<std::uint8_t, 32>;

/// Lower-case hex of `bytes`.
[[nodiscard]] std::string hex_encode(std::span<const std::uint8_t> bytes);
[[nodiscard]] std::string hex_encode(std::string_view bytes);

/// Decodes hex (either case). Errors: core::error::invalid_encoding on odd length or a non-hex
/// character.
[[nodiscard]] result<std::string> hex_decode(std::string_view text);

/// Parses exactly 64 lower-case hex characters into a digest (the canonical form we emit and
/// accept, so that one digest has one spelling in URLs, ETags and the database).
[[nodiscard]] result<Sha256Digest> parse_sha256_hex(std::string_view text);

/// Standard base64 with padding (RFC 4648 section 4).
[[nodiscard]] std::string base64_encode(std::string_view bytes);

/// Decodes standard or URL-safe base64 (both are allowed by DSSE); padding optional, no
/// whitespace. Errors: core::error::invalid_encoding.
[[nodiscard]] result<std::string> base64_decode(std::string_view text);

/// URL-safe base64 without padding, for tokens.
[[nodiscard]] std::string base64url_encode(std::string_view bytes);

/// One-shot SHA-256.
[[nodiscard]] Sha256Digest sha256(std::string_view bytes);

/// Cryptographically secure random bytes from OpenSSL's DRBG.
/// Errors: core::error::crypto_failure if the DRBG cannot be seeded.
[[nodiscard]] result<std::string> random_bytes(std::size_t n);

/// Constant-time equality for secrets of equal length (different lengths compare unequal).
[[nodiscard]] bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace fwdepot
