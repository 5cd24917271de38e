// SPDX-License-Identifier: Apache-2.0
// A device reading check-in answers from a server it cannot trust: whatever it accepts as an
// offer must be what the release key signed (name, version, size, digest) and list its model.
// The seed offer was signed by the key below, whose private half was thrown away.
#include "fuzz_target.hpp"
#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/json.hpp"
#include "fwdepot/core/manifest.hpp"
#include "offer.hpp"

#include <boost/json.hpp>

using namespace fwdepot;

namespace {

constexpr std::string_view kReleaseKey = R"(-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEwRJwtggY0B5HOxUoYi4gLGQEEsLV
y9IwjFVrCxtYIWErBdGqGRgehdBQbNQ2Etd0zSvzQG6a+OmlpFsW+bdzjg==
-----END PUBLIC KEY-----
)";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<PublicKey> trusted = {PublicKey::from_pem(kReleaseKey).value()};
  const std::string_view answer = fuzz::text(data, size);
  const client::OfferPolicy policy{size % 2 == 0 ? "https" : "coaps", trusted, 1, "m1"};
  auto offer = client::parse_offer(answer, policy);
  if (!offer || !*offer) {
    return 0;
  }
  // Accepted: it must be exactly what the key signed.
  auto parsed = parse_json_strict(answer, {.max_bytes = 1024 * 1024, .max_depth = 8});
  fuzz::check(parsed.has_value(), "an accepted answer is JSON");
  const auto& envelope = parsed->as_object().at("update").as_object().at("manifest");
  auto verified = verify_envelope_json(boost::json::serialize(envelope), trusted, 1);
  fuzz::check(verified.has_value(), "an accepted offer's manifest verifies");
  const Manifest& m = verified->manifest;
  const client::PackageInfo& info = (*offer)->info;
  fuzz::check(info.name == m.name && info.version.to_string() == m.version.to_string() &&
                  info.size == m.size_bytes && info.sha256 == m.sha256,
              "the offer is what the release key signed");
  fuzz::check(m.lists_model("m1"), "the offer is for the device's model");
  fuzz::check(!(*offer)->url.empty(), "the offer has a URL for the transport");
  return 0;
}
