// SPDX-License-Identifier: Apache-2.0
// DSSE envelopes through parsing and signature verification against a trusted key. Nothing a
// fuzzer makes can carry a valid signature by that key (the private key is never used), so
// verification must never succeed; an envelope that parses must survive its own round trip.
#include "fuzz_target.hpp"
#include "fwdepot/core/keys.hpp"
#include "fwdepot/core/manifest.hpp"

#include <vector>

using namespace fwdepot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<PublicKey> trusted = [] {
    std::vector<PublicKey> keys;
    for (KeyType t : {KeyType::ecdsa_p256, KeyType::ed25519}) {
      keys.push_back(PrivateKey::generate(t).value().public_key());
    }
    return keys;
  }();
  const std::string_view input = fuzz::text(data, size);
  auto e = parse_envelope(input);
  if (e) {
    auto again = parse_envelope(e->to_json());
    fuzz::check(again && again->payload == e->payload && again->payload_type == e->payload_type &&
                    again->signatures.size() == e->signatures.size(),
                "an envelope parses back from its own JSON");
  }
  fuzz::check(!verify_envelope_json(input, trusted, 1), "no forged envelope verifies");
  return 0;
}
