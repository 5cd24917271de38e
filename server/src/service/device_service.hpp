// SPDX-License-Identifier: Apache-2.0
// Check-in and download authorization for devices, independent of the transport.
#pragma once

#include "fwdepot/certs/pki.hpp"
#include "fwdepot/core/openssl.hpp"
#include "fwdepot/core/semver.hpp"
#include "service/api.hpp"
#include "service/metrics.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>

namespace fwdepot::server {

/// LwM2M Firmware Update object states and results, as names on the wire.
[[nodiscard]] bool is_lwm2m_state(std::string_view s);
[[nodiscard]] bool is_lwm2m_result(std::string_view s);

/// Whether a device of `model` running `current` gets `offer`'s image: never the version it
/// runs, and a lower one only where the deployment allows a downgrade. A device whose version is
/// unknown (nullopt: a DDI device before its first update) gets any image for its model.
[[nodiscard]] bool should_offer(const storage::Offer& offer, std::string_view model,
                                const std::optional<Version>& current);

/// Who a verified peer certificate names: its CN as the device id (nullopt if that is not a valid
/// id) and its OU as the model (dropped if invalid); serial_hex stays empty. Shared by the HTTPS
/// and CoAPS listeners.
[[nodiscard]] std::optional<certs::DeviceIdentity> device_identity(openssl::X509Ptr peer);

/// A check-in that passed validation, waiting for its database write.
struct PendingCheckin {
  storage::DeviceCheckin record;                // offered_image_id set from `offer`
  std::shared_ptr<const storage::Offer> offer;  // what the answer offers; nullptr: nothing
};

class DeviceService {
 public:
  DeviceService(Backend& backend, Metrics& metrics) : backend_(backend), metrics_(metrics) {}

  /// POST /checkin: validates the JSON body, records the check-in and its history event
  /// (counting check-ins and, once each, the update outcomes devices report), and answers
  /// {"update": null} or {"update": {...offer...}}. `https_origin` and `coaps_origin`
  /// ("https://host:port") build the download URLs; an empty origin leaves that URL out.
  /// Records through the shared catalog, on the calling thread.
  [[nodiscard]] ApiResponse checkin(const certs::DeviceIdentity& who, std::string_view body,
                                    std::string_view https_origin, std::string_view coaps_origin,
                                    std::int64_t now);

  /// checkin() in two halves around a write made elsewhere (a CheckinWriter's batch). The
  /// first validates the body and decides the offer: either the answer to send at once (a
  /// refusal or an error) or the check-in to record.
  [[nodiscard]] std::variant<ApiResponse, PendingCheckin> begin_checkin(
      const certs::DeviceIdentity& who, std::string_view body);
  /// The answer once the write is done: counts the check-in and any new update outcome.
  [[nodiscard]] ApiResponse finish_checkin(const PendingCheckin& pending,
                                           const storage::RecordedCheckin& recorded,
                                           std::string_view https_origin,
                                           std::string_view coaps_origin);

  /// The image `who` may download now: only the one currently offered to it. Errors:
  /// error::forbidden (no such image, or not offered to this device: the two are not told
  /// apart, so probing ids leaks nothing).
  [[nodiscard]] result<storage::ImageRecord> authorize_download(const certs::DeviceIdentity& who,
                                                                std::int64_t image_id);

 private:
  // Appends the answer to a check-in that gets `offer`, up to its URLs, to `out`, with room for
  // `room_after` bytes more. Built once per offer (parsing and serializing the manifest was most
  // of a check-in's answer), and kept while the catalog still hands out that offer.
  void append_offer_answer_head(const std::shared_ptr<const storage::Offer>& offer,
                                std::string& out, std::size_t room_after);

  struct OfferAnswer {
    std::weak_ptr<const storage::Offer> offer;  // tells a reused address from the same offer
    std::string head;
  };

  Backend& backend_;
  Metrics& metrics_;
  std::mutex answers_mutex_;
  std::map<const storage::Offer*, OfferAnswer> answers_;
};

}  // namespace fwdepot::server
