// SPDX-License-Identifier: Apache-2.0
// The SHA-1 and MD5 of an artifact, which hawkBit DDI agents check besides (or instead of)
// SHA-256. Only ever a checksum for those agents: nothing in fwdepot trusts either for security;
// the signed manifest's SHA-256 is what an image is verified against.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace fwdepot {

struct ArtifactHashes {
  std::string sha1_hex;  // lowercase hex
  std::string md5_hex;
};

/// Both hashes in one pass over bytes fed in any chunking. Computed after an upload has been
/// answered (server: ArtifactHashing) and at start for images without them, never on a
/// request's path: MD5 alone runs at about 0.57 GB/s here.
class ArtifactHasher {
 public:
  ArtifactHasher();
  ~ArtifactHasher();
  ArtifactHasher(ArtifactHasher&&) noexcept;
  ArtifactHasher& operator=(ArtifactHasher&&) noexcept;

  void update(std::string_view bytes);
  /// The hashes of everything fed; the hasher is spent afterwards.
  [[nodiscard]] ArtifactHashes finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace fwdepot
