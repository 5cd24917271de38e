// SPDX-License-Identifier: Apache-2.0
// A check-in answer, read and checked on the device: the offer's manifest must carry enough
// signatures by the device's own release keys, list the device's model, and agree with the
// offer on size and digest. Whatever the server says, nothing else is trusted.
#pragma once

#include "fwdepot/client/error.hpp"
#include "fwdepot/client/handler.hpp"
#include "fwdepot/core/keys.hpp"

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace fwdepot::client {

// A verified offer: what the server said, checked against what the release keys signed.
struct Offer {
  PackageInfo info;
  std::string url;
  std::string transfer_etag;  // the validator the transport sees for this payload
  bool server_allows_downgrade = false;
};

struct OfferPolicy {
  std::string scheme;                       // which of the offer's URLs to use: https or coaps
  std::span<const PublicKey> trusted_keys;  // the device's release keys
  std::size_t threshold = 1;
  std::string model;
};

/// The offer in a check-in answer, or nullopt for {"update": null}. Errors: error::server_error
/// (not an answer), error::unsupported_protocol (no URL for the scheme),
/// error::manifest_untrusted, error::wrong_model, error::offer_mismatch.
[[nodiscard]] result<std::optional<Offer>> parse_offer(std::string_view answer,
                                                       const OfferPolicy& policy);

}  // namespace fwdepot::client
