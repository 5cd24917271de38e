// SPDX-License-Identifier: Apache-2.0
#include "service/ddi_service.hpp"

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/json.hpp"
#include "fwdepot/core/semver.hpp"
#include "service/device_service.hpp"

#include <boost/json.hpp>

#include <array>
#include <cstdio>

namespace fwdepot::server {
namespace {

namespace json = boost::json;
using storage::ActionStatus;

constexpr std::size_t kMaxBodyBytes = 64 * 1024;
constexpr std::size_t kMaxMessageBytes = 1024;
constexpr std::size_t kMaxAttributes = 100;
constexpr std::size_t kMaxAttributeBytes = 128;  // per key and per value, as hawkBit

ApiResponse hal(json::value v) { return {200, json::serialize(v)}; }
ApiResponse bad_request(std::string_view why) { return api_error(400, "bad_request", why); }
ApiResponse no_action() { return api_error(404, "not_found", "no such action"); }

}  // namespace

std::string hhmmss(std::chrono::seconds s) {
  const auto total = s.count();
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "%02lld:%02lld:%02lld",
                static_cast<long long>(total / 3600), static_cast<long long>(total / 60 % 60),
                static_cast<long long>(total % 60));
  return buf.data();
}

namespace {

json::object link(std::string href) { return {{"href", std::move(href)}}; }

// What the device reported, parsed. hawkBit's feedback:
//   {"id": "...", "time": "...", "status": {"execution": "closed",
//    "result": {"finished": "success", "progress": {"cnt": 2, "of": 5}}, "details": ["..."]}}
// Fields DDI has added over the years ("code", "timestamp") and any others are ignored, as
// hawkBit ignores them; the ones fwdepot reads must have the documented types and values.
struct Feedback {
  std::string execution;  // closed, proceeding, canceled, scheduled, rejected, resumed,
                          // downloaded, download
  std::string finished;   // success, failure, none
  std::string message;    // the details, joined; or the progress
};

result<Feedback> parse_feedback(std::string_view body) {
  const auto kind = core::error::invalid_argument;
  auto parsed = parse_json_strict(body, {.max_bytes = kMaxBodyBytes, .max_depth = 5});
  if (!parsed) {
    return parsed.error();
  }
  if (!parsed->is_object()) {
    return Error(kind, "feedback must be a JSON object");
  }
  const json::value* status = parsed->get_object().if_contains("status");
  if (status == nullptr || !status->is_object()) {
    return Error(kind, "field 'status': an object is required");
  }
  const json::object& st = status->get_object();
  auto execution = json_field::get_string(st, "execution", kind);
  if (!execution) {
    return Error(kind, "field 'status.execution': " + execution.error().detail);
  }
  static constexpr std::array<std::string_view, 8> kExecutions = {
      "closed",   "proceeding", "canceled",   "scheduled",
      "rejected", "resumed",    "downloaded", "download"};
  if (std::find(kExecutions.begin(), kExecutions.end(), *execution) == kExecutions.end()) {
    return Error(kind, "field 'status.execution': not a DDI execution status");
  }
  Feedback f{std::string(*execution), "none", {}};
  const json::value* outcome = st.if_contains("result");
  if (outcome == nullptr || !outcome->is_object()) {
    return Error(kind, "field 'status.result': an object is required");
  }
  auto finished = json_field::get_string(outcome->get_object(), "finished", kind);
  if (!finished || (*finished != "success" && *finished != "failure" && *finished != "none")) {
    return Error(kind, "field 'status.result.finished': must be success, failure or none");
  }
  f.finished = *finished;
  if (const json::value* progress = outcome->get_object().if_contains("progress")) {
    const json::object* p = progress->if_object();
    const Error malformed(kind, "field 'status.result.progress': {\"cnt\": N, \"of\": M} expected");
    if (p == nullptr) {
      return malformed;
    }
    auto cnt = json_field::get_uint64(*p, "cnt", kind);
    result<std::uint64_t> of = std::uint64_t{0};
    if (p->contains("of")) {
      of = json_field::get_uint64(*p, "of", kind);
    }
    if (!cnt || !of) {
      return malformed;
    }
    f.message = "progress " + std::to_string(*cnt) + (*of > 0 ? "/" + std::to_string(*of) : "");
  }
  if (const json::value* details = st.if_contains("details")) {
    if (!details->is_array()) {
      return Error(kind, "field 'status.details': must be an array of strings");
    }
    std::string joined;
    for (const auto& d : details->get_array()) {
      if (!d.is_string()) {
        return Error(kind, "field 'status.details': must be an array of strings");
      }
      joined += (joined.empty() ? "" : "; ") + std::string(d.get_string());
    }
    if (!joined.empty()) {
      f.message = std::move(joined);
    }
  }
  return f;
}

// At most kMaxMessageBytes, cut on a character boundary: the history is shown as UTF-8 text.
std::string capped(std::string s) {
  if (s.size() > kMaxMessageBytes) {
    std::size_t cut = kMaxMessageBytes;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) {
      --cut;
    }
    s.resize(cut);
  }
  return s;
}

// The action `id` if it is `who`'s; nullopt for one that does not exist or is another device's:
// the two are answered alike, so that action ids cannot be probed.
result<std::optional<storage::ActionRecord>> own_action(storage::Catalog& c,
                                                        const certs::DeviceIdentity& who,
                                                        std::int64_t id) {
  auto action = c.find_action(id);
  if (!action && action.error() != storage::error::not_found) {
    return action.error();
  }
  if (!action || action->device_id != who.device_id) {
    return std::optional<storage::ActionRecord>();
  }
  return std::optional<storage::ActionRecord>(std::move(*action));
}

// The device's LwM2M state while an update proceeds: a DDI "proceeding" after the download
// means the device is installing.
std::string progressing_state(std::string_view current) {
  return current == "downloaded" || current == "updating" ? "updating" : "downloading";
}

}  // namespace

ApiResponse DdiService::poll(const certs::DeviceIdentity& who, std::string_view base,
                             std::int64_t now) {
  struct Pending {
    std::optional<std::int64_t> cancel;
    std::optional<std::int64_t> deployment;
    bool config_data = false;
  };
  auto pending = backend_.with_catalog([&](storage::Catalog& c) -> result<Pending> {
    auto device = c.touch_device(who.device_id, who.model, now);
    if (!device) {
      return device.error();
    }
    Pending p;
    p.config_data = device->attributes == "{}";
    // The deployment that applies to the device now, if any.
    auto offer = c.find_offer(who.device_id, device->model);
    if (!offer) {
      return offer.error();
    }
    std::optional<Version> current;
    bool known = true;  // an unparsable stored version never gets an offer
    if (!device->version.empty()) {
      auto v = Version::parse(device->version);
      known = static_cast<bool>(v);
      current = v ? std::optional<Version>(*v) : std::nullopt;
    }
    std::optional<std::int64_t> applicable;
    if (*offer && known && should_offer(**offer, device->model, current)) {
      applicable = (*offer)->deployment.id;
    }
    // An image whose SHA-1 and MD5 are still being computed after its upload (ArtifactHashing)
    // gets no action yet (every deploymentBase carries them), though it already supersedes.
    const bool hashed = applicable && (*offer)->image.has_artifact_hashes();
    auto active = c.active_actions(who.device_id);
    if (!active) {
      return active.error();
    }
    for (auto& a : *active) {
      if (a.status == ActionStatus::open && applicable && a.deployment_id != *applicable) {
        // A newer deployment supersedes the running one: as hawkBit does, the device is asked
        // to stop it first, and is offered the new one once it has.
        if (auto r = c.request_action_cancel(a.id, now); !r) {
          return r.error();
        }
        a.status = ActionStatus::canceling;
      }
      if (a.status == ActionStatus::canceling && !p.cancel) {
        p.cancel = a.id;
      }
      if (a.status == ActionStatus::open && !p.deployment) {
        p.deployment = a.id;
      }
    }
    if (p.cancel || p.deployment || !applicable || !hashed) {
      return p;
    }
    // Once per deployment: an action the device closed (with a failure, say) is not offered
    // again until an admin deploys anew.
    auto action = c.open_action(who.device_id, *applicable, now);
    if (!action) {
      return action.error();
    }
    if (action->status == ActionStatus::open) {
      p.deployment = action->id;
    }
    return p;
  });
  if (!pending) {
    return api_error(pending.error());
  }
  metrics_.checkin();
  json::object links;
  if (pending->cancel) {
    links["cancelAction"] =
        link(std::string(base) + "/cancelAction/" + std::to_string(*pending->cancel));
  } else if (pending->deployment) {
    links["deploymentBase"] =
        link(std::string(base) + "/deploymentBase/" + std::to_string(*pending->deployment));
  }
  if (pending->config_data) {
    links["configData"] = link(std::string(base) + "/configData");
  }
  json::object out{{"config", json::object{{"polling", json::object{{"sleep", sleep_text_}}}}}};
  if (!links.empty()) {
    out["_links"] = std::move(links);
  }
  return hal(std::move(out));
}

ApiResponse DdiService::deployment_base(const certs::DeviceIdentity& who, std::int64_t action_id,
                                        std::string_view base) {
  using Found = std::optional<std::pair<storage::ActionRecord, storage::ImageRecord>>;
  auto found = backend_.with_catalog([&](storage::Catalog& c) -> result<Found> {
    auto action = own_action(c, who, action_id);
    if (!action || !*action) {
      return action ? Found() : result<Found>(action.error());
    }
    auto image = c.find_image((*action)->image_id);
    if (!image) {
      return image.error();
    }
    return Found(std::pair{std::move(**action), std::move(*image)});
  });
  if (!found) {
    return api_error(found.error());
  }
  if (!*found || (*found)->first.status == ActionStatus::canceling ||
      (*found)->first.status == ActionStatus::canceled) {
    return no_action();
  }
  const auto& [action, image] = **found;
  using storage::ActionType;
  const char* download = action.type == ActionType::soft ? "attempt" : "forced";
  const char* update = action.type == ActionType::forced ? "forced"
                       : action.type == ActionType::soft ? "attempt"
                                                         : "skip";
  // fwdepot serves HTTPS only: download-http names the same URL, for agents configured to
  // follow that link.
  const std::string href = std::string(base) + "/softwaremodules/" + std::to_string(image.id) +
                           "/artifacts/" + image.filename;
  json::object artifact{{"filename", image.filename},
                        {"hashes", json::object{{"sha1", image.sha1_hex},
                                                {"md5", image.md5_hex},
                                                {"sha256", hex_encode(image.sha256)}}},
                        {"size", image.size_bytes},
                        {"_links", json::object{{"download", link(href)},
                                                {"download-http", link(href)},
                                                {"md5sum", link(href + ".MD5SUM")},
                                                {"md5sum-http", link(href + ".MD5SUM")}}}};
  // The signed manifest travels as the chunk's metadata: an agent that knows fwdepot verifies
  // it against its own keys, as the native client does.
  json::object chunk{{"part", "os"},
                     {"version", image.version},
                     {"name", image.name},
                     {"artifacts", json::array{std::move(artifact)}},
                     {"metadata", json::array{json::object{{"key", "fwdepot.manifest"},
                                                           {"value", image.envelope}}}}};
  return hal(json::object{{"id", std::to_string(action.id)},
                          {"deployment", json::object{{"download", download},
                                                      {"update", update},
                                                      {"chunks", json::array{std::move(chunk)}}}}});
}

ApiResponse DdiService::cancel_action(const certs::DeviceIdentity& who, std::int64_t action_id) {
  auto action =
      backend_.with_catalog([&](storage::Catalog& c) { return own_action(c, who, action_id); });
  if (!action) {
    return api_error(action.error());
  }
  if (!*action || ((*action)->status != ActionStatus::canceling &&
                   (*action)->status != ActionStatus::canceled)) {
    return no_action();
  }
  const std::string id = std::to_string((*action)->id);
  return hal(json::object{{"id", id}, {"cancelAction", json::object{{"stopId", id}}}});
}

ApiResponse DdiService::deployment_feedback(const certs::DeviceIdentity& who,
                                            std::int64_t action_id, std::string_view body,
                                            std::int64_t now) {
  return feedback(who, action_id, body, now, FeedbackOn::deployment);
}

ApiResponse DdiService::cancel_feedback(const certs::DeviceIdentity& who, std::int64_t action_id,
                                        std::string_view body, std::int64_t now) {
  return feedback(who, action_id, body, now, FeedbackOn::cancel);
}

ApiResponse DdiService::feedback(const certs::DeviceIdentity& who, std::int64_t action_id,
                                 std::string_view body, std::int64_t now, FeedbackOn on) {
  auto f = parse_feedback(body);
  if (!f) {
    return bad_request(f.error().detail);
  }
  std::optional<std::string> outcome;  // an update result to count, once
  auto answer = backend_.with_catalog([&](storage::Catalog& c) -> result<ApiResponse> {
    auto owned = own_action(c, who, action_id);
    if (!owned || !*owned) {
      return owned ? result<ApiResponse>(no_action()) : result<ApiResponse>(owned.error());
    }
    const storage::ActionRecord* action = &**owned;
    auto device = c.find_device(who.device_id);
    if (!device) {
      return device.error();
    }
    auto image = c.find_image(action->image_id);
    if (!image) {
      return image.error();
    }
    const bool running =
        action->status == ActionStatus::open ||
        (on == FeedbackOn::deployment && action->status == ActionStatus::canceling);
    if (on == FeedbackOn::deployment ? !running : action->status != ActionStatus::canceling) {
      return api_error(410, "gone",
                       "action " + std::to_string(action_id) + " is " +
                           std::string(storage::to_string(action->status)));
    }
    storage::ActionUpdate u{
        .action_id = action->id,
        .expected = action->status,
        .status = action->status,
        .event = {.id = 0,
                  .device_id = who.device_id,
                  .at = now,
                  .kind = on == FeedbackOn::deployment ? "feedback" : "cancel_feedback",
                  .state = device->state,
                  .version = device->version,
                  .result = std::nullopt,
                  .message = std::nullopt,
                  .image_id = image->id}};
    storage::DeviceEvent& e = u.event;
    const std::string& x = f->execution;
    std::string note = capped(f->message.empty() ? "ddi " + x : "ddi " + x + ": " + f->message);
    if (on == FeedbackOn::cancel) {
      const bool confirmed = x == "canceled" || (x == "closed" && f->finished != "failure");
      const bool refused = x == "rejected" || (x == "closed" && f->finished == "failure");
      if (confirmed) {
        u.status = ActionStatus::canceled;
        e.state = "idle";
      } else if (refused) {
        u.status = ActionStatus::open;  // the device goes on with the update
      }
    } else if (x == "closed") {
      u.status = ActionStatus::closed;
      if (f->finished == "failure") {
        e.state = "idle";
        e.result = "update_failed";
      } else if (action->type == storage::ActionType::download_only) {
        e.state = "downloaded";
      } else {
        e.state = "idle";
        e.version = image->version;
        e.result = "success";
      }
      outcome = e.result;
    } else if (x == "canceled") {
      u.status = ActionStatus::canceled;
      e.state = "idle";
    } else if (x == "download") {
      e.state = "downloading";
      e.result = "initial";
    } else if (x == "downloaded") {
      e.state = "downloaded";
      // A download-only action ends with the download, as in hawkBit.
      if (action->type == storage::ActionType::download_only) {
        u.status = ActionStatus::closed;
      }
    } else if (x == "proceeding" || x == "resumed") {
      e.state = progressing_state(device->state);
    } else {  // scheduled, rejected: the device waits; nothing is installed
      e.state = "idle";
    }
    e.message = std::move(note);
    if (auto r = c.record_action_update(u); !r) {
      return r.error();
    }
    return ApiResponse{200, ""};
  });
  if (!answer) {
    return api_error(answer.error());
  }
  if (outcome && answer->status == 200) {
    metrics_.update_outcome(*outcome);
  }
  return *answer;
}

ApiResponse DdiService::put_config_data(const certs::DeviceIdentity& who, std::string_view body,
                                        std::int64_t now) {
  const auto kind = core::error::invalid_argument;
  auto parsed = parse_json_strict(body, {.max_bytes = kMaxBodyBytes, .max_depth = 3});
  if (!parsed) {
    return api_error(parsed.error());
  }
  if (!parsed->is_object()) {
    return bad_request("configData must be a JSON object");
  }
  const json::object& o = parsed->get_object();
  const json::value* data = o.if_contains("data");
  if (data == nullptr || !data->is_object()) {
    return bad_request("field 'data': an object of strings is required");
  }
  auto mode = json_field::get_optional_string(o, "mode", kind);
  if (!mode || (*mode && **mode != "merge" && **mode != "replace" && **mode != "remove")) {
    return bad_request("field 'mode': must be merge, replace or remove");
  }
  for (const auto& [key, value] : data->get_object()) {
    if (key.empty() || key.size() > kMaxAttributeBytes || !value.is_string() ||
        value.get_string().size() > kMaxAttributeBytes) {
      return bad_request("field 'data': keys of 1-128 bytes with string values of at most 128");
    }
  }
  const std::string_view how = mode->value_or("merge");
  auto stored = backend_.with_catalog([&](storage::Catalog& c) -> result<void> {
    auto device = c.touch_device(who.device_id, who.model, now);
    if (!device) {
      return device.error();
    }
    std::error_code ec;
    json::value current = json::parse(device->attributes, ec);
    json::object attributes = !ec && current.is_object() ? current.get_object() : json::object();
    if (how == "replace") {
      attributes.clear();
    }
    for (const auto& [key, value] : data->get_object()) {
      if (how == "remove") {
        attributes.erase(key);
      } else {
        attributes[key] = value;
      }
    }
    if (attributes.size() > kMaxAttributes) {
      return Error(core::error::invalid_argument, "more than 100 attributes");
    }
    return c.put_attributes(who.device_id, json::serialize(attributes), now);
  });
  if (!stored) {
    return api_error(stored.error());
  }
  return {200, ""};
}

result<storage::ImageRecord> DdiService::authorize_artifact(const certs::DeviceIdentity& who,
                                                            std::int64_t module_id,
                                                            std::string_view filename) {
  return backend_.with_catalog([&](storage::Catalog& c) -> result<storage::ImageRecord> {
    const Error missing(storage::error::not_found, "no such artifact for this device");
    auto active = c.active_actions(who.device_id);
    if (!active) {
      return active.error();
    }
    for (const auto& a : *active) {
      if (a.status == ActionStatus::open && a.image_id == module_id) {
        auto image = c.find_image(module_id);
        if (!image) {
          return image.error();
        }
        if (image->filename == filename) {
          return image;
        }
      }
    }
    return missing;
  });
}

}  // namespace fwdepot::server
