// SPDX-License-Identifier: Apache-2.0
#include "offer.hpp"

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/json.hpp"
#include "fwdepot/core/manifest.hpp"

#include <boost/json.hpp>

namespace fwdepot::client {
namespace {

namespace json = boost::json;

std::string etag_of(const Sha256Digest& d) { return "\"" + hex_encode(d) + "\""; }

// Over CoAPS the ETag is the digest's first 8 bytes (CoAP allows no more).
std::string coap_etag_of(const Sha256Digest& d) {
  return "\"" + hex_encode(std::span<const std::uint8_t>(d.data(), 8)) + "\"";
}

}  // namespace

result<std::optional<Offer>> parse_offer(std::string_view answer, const OfferPolicy& policy) {
  auto parsed = parse_json_strict(answer, {.max_bytes = 1024 * 1024, .max_depth = 8});
  if (!parsed || !parsed->is_object()) {
    return Error(error::server_error, "check-in answer is not a JSON object");
  }
  const json::value* update = parsed->as_object().if_contains("update");
  if (update == nullptr) {
    return Error(error::server_error, "check-in answer without 'update'");
  }
  if (update->is_null()) {
    return std::optional<Offer>();
  }
  if (!update->is_object()) {
    return Error(error::server_error, "'update' is not an object");
  }
  const json::object& u = update->as_object();
  const json::value* manifest = u.if_contains("manifest");
  const json::value* id = u.if_contains("image_id");
  const json::value* size = u.if_contains("size");
  const json::value* sha = u.if_contains("sha256");
  const json::value* urls = u.if_contains("urls");
  if (!manifest || !id || !id->is_int64() || !size || !size->is_number() || !sha ||
      !sha->is_string() || !urls || !urls->is_object()) {
    return Error(error::server_error, "offer lacks manifest, image_id, size, sha256 or urls");
  }
  const json::value* url = urls->as_object().if_contains(policy.scheme);
  if (!url || !url->is_string()) {
    return Error(error::unsupported_protocol, "the offer has no " + policy.scheme + " URL");
  }
  // The signatures are checked against the device's own keys, whatever the server says.
  auto verified =
      verify_envelope_json(json::serialize(*manifest), policy.trusted_keys, policy.threshold);
  if (!verified) {
    return Error(error::manifest_untrusted, verified.error().message());
  }
  const Manifest& m = verified->manifest;
  if (!m.lists_model(policy.model)) {
    return Error(error::wrong_model,
                 m.name + " " + m.version.to_string() + " is not for model " + policy.model);
  }
  std::error_code ec;
  const auto offered_size = size->to_number<std::uint64_t>(ec);
  if (ec || offered_size != m.size_bytes || sha->as_string() != hex_encode(m.sha256)) {
    return Error(error::offer_mismatch, "the offer's size or sha256 differs from the manifest");
  }
  Offer o;
  o.info.image_id = id->as_int64();
  o.info.name = m.name;
  o.info.version = m.version;
  o.info.size = m.size_bytes;
  o.info.sha256 = m.sha256;
  o.info.etag = etag_of(m.sha256);
  o.url = std::string(url->as_string());
  o.transfer_etag = policy.scheme == "coaps" ? coap_etag_of(m.sha256) : o.info.etag;
  if (const json::value* d = u.if_contains("allow_downgrade"); d && d->is_bool()) {
    o.server_allows_downgrade = d->as_bool();
  }
  return std::optional<Offer>(std::move(o));
}

}  // namespace fwdepot::client
