// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/digest.hpp"

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/openssl.hpp"

#include <stdexcept>
#include <vector>

namespace fwdepot {

struct ArtifactHasher::State {
  openssl::MdCtxPtr sha1{EVP_MD_CTX_new()};
  openssl::MdCtxPtr md5{EVP_MD_CTX_new()};
};

namespace {

std::string final_hex(EVP_MD_CTX* ctx) {
  std::vector<unsigned char> out(EVP_MAX_MD_SIZE);
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx, out.data(), &n) != 1) {
    throw std::runtime_error("digest final failed");
  }
  out.resize(n);
  return hex_encode(out);
}

}  // namespace

ArtifactHasher::ArtifactHasher() : state_(std::make_unique<State>()) {
  // Both are in OpenSSL's default provider; failing here means a broken OpenSSL, not bad input.
  if (!state_->sha1 || !state_->md5 ||
      EVP_DigestInit_ex(state_->sha1.get(), EVP_sha1(), nullptr) != 1 ||
      EVP_DigestInit_ex(state_->md5.get(), EVP_md5(), nullptr) != 1) {
    throw std::runtime_error("SHA-1/MD5 unavailable in this OpenSSL");
  }
}
ArtifactHasher::~ArtifactHasher() = default;
ArtifactHasher::ArtifactHasher(ArtifactHasher&&) noexcept = default;
ArtifactHasher& ArtifactHasher::operator=(ArtifactHasher&&) noexcept = default;

void ArtifactHasher::update(std::string_view bytes) {
  EVP_DigestUpdate(state_->sha1.get(), bytes.data(), bytes.size());
  EVP_DigestUpdate(state_->md5.get(), bytes.data(), bytes.size());
}

ArtifactHashes ArtifactHasher::finish() {
  return {final_hex(state_->sha1.get()), final_hex(state_->md5.get())};
}

}  // namespace fwdepot
