// SPDX-License-Identifier: Apache-2.0
// Streaming image verification, shared by the server (uploads) and the client (downloads).
#pragma once

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/error.hpp"
#include "fwdepot/core/manifest.hpp"
#include "fwdepot/core/openssl.hpp"

#include <cstdint>
#include <string_view>

namespace fwdepot {

/// Checks a payload against the size and SHA-256 of a verified manifest while it streams in,
/// in chunks of any size from any transport. Holds only a hash state: constant memory whatever
/// the image size. Not thread-safe; one verifier per download.
class ImageVerifier {
 public:
  /// Errors: core::error::invalid_argument if `expected_size` exceeds kMaxImageBytes,
  /// core::error::crypto_failure if OpenSSL cannot set up SHA-256.
  [[nodiscard]] static result<ImageVerifier> create(std::uint64_t expected_size,
                                                    const Sha256Digest& expected_sha256);
  [[nodiscard]] static result<ImageVerifier> create(const Manifest& manifest) {
    return create(manifest.size_bytes, manifest.sha256);
  }

  /// Hashes `chunk`. Errors: core::error::too_many_bytes as soon as the total would exceed the
  /// expected size (the chunk is then not hashed at all, and so the caller must not store it).
  /// After any error the verifier stays failed and every later call fails the same way.
  [[nodiscard]] result<void> update(std::string_view chunk);

  /// Ok only if exactly the expected number of bytes arrived and their SHA-256 matches.
  /// Errors: core::error::size_mismatch (too few), core::error::digest_mismatch, or the sticky
  /// error of update(). May be called once; later calls fail with invalid_argument.
  [[nodiscard]] result<void> finish();

  [[nodiscard]] std::uint64_t bytes_seen() const { return seen_; }
  [[nodiscard]] std::uint64_t expected_size() const { return expected_size_; }

 private:
  ImageVerifier(openssl::MdCtxPtr ctx, std::uint64_t size, const Sha256Digest& digest)
      : ctx_(std::move(ctx)), expected_size_(size), expected_sha256_(digest) {}

  openssl::MdCtxPtr ctx_;
  std::uint64_t expected_size_;
  Sha256Digest expected_sha256_;
  std::uint64_t seen_ = 0;
  bool finished_ = false;
  Error failure_;  // sticky; code is empty while all is well
};

}  // namespace fwdepot
