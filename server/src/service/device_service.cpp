// SPDX-License-Identifier: Apache-2.0
#include "service/device_service.hpp"

#include "fwdepot/core/ids.hpp"
#include "fwdepot/core/json.hpp"
#include "fwdepot/core/semver.hpp"

#include <array>
#include <boost/json.hpp>
#include <initializer_list>

namespace fwdepot::server {

std::optional<certs::DeviceIdentity> device_identity(openssl::X509Ptr peer) {
  if (!peer) {
    return std::nullopt;
  }
  const certs::Certificate cert(std::move(peer));
  // No serial: requests need the id and model, and a connection idling for hours need not hold
  // a copy of it (revocation was checked in the handshake).
  certs::DeviceIdentity id{cert.subject_common_name(), cert.subject_model(), {}};
  if (!validate_identifier(id.device_id, "device id")) {
    return std::nullopt;
  }
  if (!id.model.empty() && !validate_identifier(id.model, "model")) {
    id.model.clear();
  }
  return id;
}
namespace {

namespace json = boost::json;

constexpr std::size_t kMaxCheckinBytes = 4096;
constexpr std::size_t kMaxMessageBytes = 1024;

constexpr std::array<std::string_view, 4> kStates = {"idle", "downloading", "downloaded",
                                                     "updating"};
constexpr std::array<std::string_view, 10> kResults = {"initial",
                                                       "success",
                                                       "not_enough_storage",
                                                       "out_of_memory",
                                                       "connection_lost",
                                                       "integrity_failure",
                                                       "unsupported_package",
                                                       "invalid_uri",
                                                       "update_failed",
                                                       "unsupported_protocol"};

ApiResponse bad_request(std::string_view message) { return api_error(400, "bad_request", message); }

// Appends the concatenation of `parts` as one JSON string: quoted, with '"', '\\' and control
// characters escaped (an origin comes from the request's Host field).
void append_json_url(std::string& out, std::initializer_list<std::string_view> parts) {
  constexpr std::string_view kHex = "0123456789abcdef";
  out += '"';
  for (std::string_view part : parts) {
    for (const char c : part) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (u < 0x20) {
        out += "\\u00";
        out += kHex[u >> 4];
        out += kHex[u & 0xf];
      } else {
        out += c;
      }
    }
  }
  out += '"';
}

}  // namespace

bool should_offer(const storage::Offer& offer, std::string_view model,
                  const std::optional<Version>& current) {
  if (std::find(offer.image.models.begin(), offer.image.models.end(), model) ==
      offer.image.models.end()) {
    return false;
  }
  auto offered = Version::parse(offer.image.version);
  if (!offered) {
    return false;
  }
  if (!current || *offered > *current) {
    return true;
  }
  return offer.deployment.allow_downgrade && *offered != *current;
}

bool is_lwm2m_state(std::string_view s) {
  return std::find(kStates.begin(), kStates.end(), s) != kStates.end();
}

bool is_lwm2m_result(std::string_view s) {
  return std::find(kResults.begin(), kResults.end(), s) != kResults.end();
}

ApiResponse DeviceService::checkin(const certs::DeviceIdentity& who, std::string_view body,
                                   std::string_view https_origin, std::string_view coaps_origin,
                                   std::int64_t now) {
  auto begun = begin_checkin(who, body);
  if (auto* answer = std::get_if<ApiResponse>(&begun)) {
    return std::move(*answer);
  }
  const auto& pending = std::get<PendingCheckin>(begun);
  auto recorded = backend_.with_catalog([&](storage::Catalog& catalog) {
    return catalog.record_checkins({&pending.record, 1}, now);
  });
  return finish_checkin(pending, recorded ? std::move(recorded->front()) : recorded.error(),
                        https_origin, coaps_origin);
}

std::variant<ApiResponse, PendingCheckin> DeviceService::begin_checkin(
    const certs::DeviceIdentity& who, std::string_view body) {
  // The parsed body lives only in this call (what is kept is copied out): its memory comes
  // from this frame's buffer, or the heap past it.
  unsigned char buffer[1024];
  json::monotonic_resource memory(buffer, sizeof buffer);
  auto parsed = parse_json_strict(body, {.max_bytes = kMaxCheckinBytes, .max_depth = 2}, &memory);
  if (!parsed) {
    return api_error(parsed.error());
  }
  if (!parsed->is_object()) {
    return bad_request("check-in must be a JSON object");
  }
  const json::object& o = parsed->get_object();
  const core::error kind = core::error::invalid_argument;
  if (auto r =
          json_field::reject_unknown(o, {"model", "version", "state", "result", "message"}, kind);
      !r) {
    return bad_request(r.error().detail);
  }
  auto model = json_field::get_string(o, "model", kind);
  auto version_text = json_field::get_string(o, "version", kind);
  auto state = json_field::get_string(o, "state", kind);
  auto result_text = json_field::get_optional_string(o, "result", kind);
  auto message = json_field::get_optional_string(o, "message", kind);
  if (!model || !version_text || !state || !result_text || !message) {
    const Error e = !model          ? model.error()
                    : !version_text ? version_text.error()
                    : !state        ? state.error()
                    : !result_text  ? result_text.error()
                                    : message.error();
    return bad_request(e.detail);
  }
  if (auto ok = validate_identifier(*model, "model"); !ok) {
    return bad_request(ok.error().detail);
  }
  // A certificate that names a model binds the device to it: a device cannot ask for another
  // model's firmware by claiming to be one.
  if (!who.model.empty() && *model != who.model) {
    return api_error(403, "forbidden", "model does not match the device certificate");
  }
  auto version = Version::parse(*version_text);
  if (!version) {
    return bad_request(version.error().detail);
  }
  if (!is_lwm2m_state(*state)) {
    return bad_request("state must be one of idle, downloading, downloaded, updating");
  }
  if (*result_text && !is_lwm2m_result(**result_text)) {
    return bad_request("result is not an LwM2M firmware update result");
  }
  if (*message && (*message)->size() > kMaxMessageBytes) {
    return bad_request("message longer than 1024 bytes");
  }

  PendingCheckin p{
      storage::DeviceCheckin{
          who.device_id, std::string(*model), version->to_string(), std::string(*state),
          *result_text ? std::optional<std::string>(std::string(**result_text)) : std::nullopt,
          *message ? std::optional<std::string>(std::string(**message)) : std::nullopt,
          std::nullopt},
      nullptr};
  // The offer is decided before the write so that the check-in event records what the device
  // was told.
  auto offer = backend_.with_catalog(
      [&](storage::Catalog& catalog) { return catalog.find_offer(who.device_id, *model); });
  if (!offer) {
    return api_error(offer.error());
  }
  if (*offer && should_offer(**offer, *model, *version)) {
    p.record.offered_image_id = (*offer)->image.id;
    p.offer = std::move(*offer);
  }
  return p;
}

ApiResponse DeviceService::finish_checkin(const PendingCheckin& pending,
                                          const storage::RecordedCheckin& recorded,
                                          std::string_view https_origin,
                                          std::string_view coaps_origin) {
  if (!recorded) {
    return api_error(recorded.error());
  }
  const storage::DeviceCheckin& c = pending.record;
  const std::optional<storage::DeviceRecord>& before = *recorded;
  metrics_.checkin();
  // A device repeats its last result on every check-in until the next update starts; an
  // outcome is new when the result or the version it reports changed.
  if (c.result && *c.result != "initial" &&
      (!before || before->last_result != c.result || before->version != c.version)) {
    metrics_.update_outcome(*c.result);
  }
  if (!pending.offer) {
    return {200, R"({"update":null})"};
  }
  const std::string id = std::to_string(pending.offer->image.id);
  constexpr std::string_view kHttpsPath = "/api/v1/device/images/";
  constexpr std::string_view kCoapsPath = "/fw/";
  // The answer is written once into a string sized for it: the kept head, then the URLs,
  // which depend on the host the device reached. An origin escapes to at most 6 bytes a byte.
  std::string body;
  append_offer_answer_head(pending.offer, body,
                           6 * (https_origin.size() + coaps_origin.size()) + kHttpsPath.size() +
                               kCoapsPath.size() + 2 * id.size() + 32);
  body += '{';
  if (!https_origin.empty()) {
    body += "\"https\":";
    append_json_url(body, {https_origin, kHttpsPath, id});
  }
  if (!coaps_origin.empty()) {
    body += https_origin.empty() ? "\"coaps\":" : ",\"coaps\":";
    append_json_url(body, {coaps_origin, kCoapsPath, id});
  }
  body += "}}}";
  return {200, std::move(body)};
}

void DeviceService::append_offer_answer_head(const std::shared_ptr<const storage::Offer>& offer,
                                             std::string& out, std::size_t room_after) {
  constexpr std::size_t kMaxKept = 64;  // offers live as long as their deployments are active
  const std::lock_guard lock(answers_mutex_);
  if (auto it = answers_.find(offer.get()); it != answers_.end()) {
    const auto& kept = it->second.offer;
    if (!kept.owner_before(offer) && !offer.owner_before(kept)) {
      out.reserve(out.size() + it->second.head.size() + room_after);
      out += it->second.head;
      return;
    }
  }
  if (answers_.size() >= kMaxKept) {
    std::erase_if(answers_, [](const auto& a) { return a.second.offer.expired(); });
    if (answers_.size() >= kMaxKept) {
      answers_.clear();
    }
  }
  const storage::ImageRecord& image = offer->image;
  json::object update;
  update["image_id"] = image.id;
  update["name"] = image.name;
  update["version"] = image.version;
  std::error_code ec;
  update["manifest"] = json::parse(image.envelope, ec);
  update["size"] = image.size_bytes;
  update["sha256"] = hex_encode(image.sha256);
  update["allow_downgrade"] = offer->deployment.allow_downgrade;
  update["urls"] = json::object();
  // {"update":{...,"urls":{}}} without the last "{}}}": the URLs, which depend on the host the
  // device reached, and the closing braces follow.
  std::string head = json::serialize(json::object{{"update", std::move(update)}});
  head.resize(head.size() - 4);
  out.reserve(out.size() + head.size() + room_after);
  out += head;
  answers_[offer.get()] = OfferAnswer{offer, std::move(head)};
}

result<storage::ImageRecord> DeviceService::authorize_download(const certs::DeviceIdentity& who,
                                                               std::int64_t image_id) {
  auto offer = backend_.with_catalog(
      [&](storage::Catalog& catalog) -> result<std::shared_ptr<const storage::Offer>> {
        auto device = catalog.find_device(who.device_id);
        if (!device) {
          return device.error();
        }
        auto offer = catalog.find_offer(who.device_id, device->model);
        if (!offer || !*offer) {
          return offer;
        }
        auto current = Version::parse(device->version);
        if (!current || !should_offer(**offer, device->model, *current)) {
          return std::shared_ptr<const storage::Offer>();
        }
        return offer;
      });
  if (!offer) {
    if (offer.error() == storage::error::not_found) {
      return Error(error::forbidden, "device has not checked in");
    }
    return offer.error();
  }
  if (!*offer || (*offer)->image.id != image_id) {
    return Error(error::forbidden,
                 "image " + std::to_string(image_id) + " is not offered to this device");
  }
  return (*offer)->image;
}

}  // namespace fwdepot::server
