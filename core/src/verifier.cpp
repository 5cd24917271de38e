// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/verifier.hpp"

#include <openssl/crypto.h>

namespace fwdepot {

result<ImageVerifier> ImageVerifier::create(std::uint64_t expected_size,
                                            const Sha256Digest& expected_sha256) {
  if (expected_size > kMaxImageBytes) {
    return Error(core::error::invalid_argument, "expected size over the 2^53-1 byte limit");
  }
  openssl::MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return Error(core::error::crypto_failure, "SHA-256 init: " + openssl::drain_errors());
  }
  return ImageVerifier(std::move(ctx), expected_size, expected_sha256);
}

result<void> ImageVerifier::update(std::string_view chunk) {
  if (failure_.code) {
    return failure_;
  }
  if (finished_) {
    return Error(core::error::invalid_argument, "update() after finish()");
  }
  if (chunk.size() > expected_size_ - seen_) {
    failure_ = Error(core::error::too_many_bytes,
                     "more than the manifest's " + std::to_string(expected_size_) + " bytes");
    return failure_;
  }
  if (EVP_DigestUpdate(ctx_.get(), chunk.data(), chunk.size()) != 1) {
    failure_ = Error(core::error::crypto_failure, "SHA-256 update: " + openssl::drain_errors());
    return failure_;
  }
  seen_ += chunk.size();
  return {};
}

result<void> ImageVerifier::finish() {
  if (failure_.code) {
    return failure_;
  }
  if (finished_) {
    return Error(core::error::invalid_argument, "finish() called twice");
  }
  finished_ = true;
  if (seen_ != expected_size_) {
    failure_ = Error(core::error::size_mismatch,
                     std::to_string(seen_) + " of " + std::to_string(expected_size_) + " bytes");
    return failure_;
  }
  Sha256Digest actual{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_.get(), actual.data(), &len) != 1 || len != actual.size()) {
    failure_ = Error(core::error::crypto_failure, "SHA-256 final: " + openssl::drain_errors());
    return failure_;
  }
  if (CRYPTO_memcmp(actual.data(), expected_sha256_.data(), actual.size()) != 0) {
    failure_ = Error(core::error::digest_mismatch, "got " + hex_encode(actual));
    return failure_;
  }
  return {};
}

}  // namespace fwdepot
