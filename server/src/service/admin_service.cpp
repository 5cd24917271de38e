// SPDX-License-Identifier: Apache-2.0
#include "service/admin_service.hpp"

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/ids.hpp"
#include "fwdepot/core/json.hpp"
#include "fwdepot/core/manifest.hpp"
#include "fwdepot/storage/image_store.hpp"

#include <openssl/crypto.h>

#include <boost/json.hpp>

#include <cctype>
#include <charconv>

namespace fwdepot::server {
namespace {

namespace json = boost::json;

constexpr std::size_t kMaxJsonBodyBytes = 64 * 1024;
// DTLS PSKs: 128 bits at least; 64 bytes is libcoap's limit.
constexpr std::size_t kMinPskBytes = 16;
constexpr std::size_t kMaxPskBytes = 64;

json::array to_array(const std::vector<std::string>& items) {
  json::array a;
  for (const auto& s : items) {
    a.emplace_back(s);
  }
  return a;
}

json::object image_json(const storage::ImageRecord& i, bool with_manifest) {
  json::object o{{"id", i.id},
                 {"name", i.name},
                 {"version", i.version},
                 {"models", to_array(i.models)},
                 {"size", i.size_bytes},
                 {"sha256", hex_encode(i.sha256)},
                 {"sha1", i.sha1_hex},
                 {"md5", i.md5_hex},
                 {"filename", i.filename},
                 {"signer_key_ids", to_array(i.signer_key_ids)},
                 {"description", i.description},
                 {"created_at", i.created_at}};
  if (with_manifest) {
    std::error_code ec;
    o["manifest"] = json::parse(i.envelope, ec);
  }
  return o;
}

json::value opt(const std::optional<std::string>& v) {
  return v ? json::value(*v) : json::value(nullptr);
}
json::value opt(const std::optional<std::int64_t>& v) {
  return v ? json::value(*v) : json::value(nullptr);
}

json::object device_json(const storage::DeviceRecord& d) {
  std::error_code ec;
  json::value attributes = json::parse(d.attributes, ec);
  if (ec || !attributes.is_object()) {
    attributes = json::object();
  }
  return {{"id", d.id},
          {"model", d.model},
          {"version", d.version},
          {"state", d.state},
          {"last_result", opt(d.last_result)},
          {"last_message", opt(d.last_message)},
          {"first_seen", d.first_seen},
          {"last_seen", d.last_seen},
          {"attributes", std::move(attributes)}};
}

json::object deployment_json(const storage::DeploymentRecord& d) {
  return {{"id", d.id},
          {"image_id", d.image_id},
          {"devices", to_array(d.devices)},
          {"models", to_array(d.models)},
          {"allow_downgrade", d.allow_downgrade},
          {"action_type", storage::to_string(d.action_type)},
          {"created_at", d.created_at},
          {"cancelled_at", opt(d.cancelled_at)},
          {"active", !d.cancelled_at.has_value()}};
}

ApiResponse ok_json(int status, json::value v) { return {status, json::serialize(v)}; }

std::optional<std::int64_t> parse_id(std::string_view s) {
  std::int64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v <= 0 || s.front() == '+') {
    return std::nullopt;
  }
  return v;
}

std::optional<std::size_t> parse_count(const std::map<std::string, std::string>& q,
                                       const std::string& key, std::size_t fallback) {
  auto it = q.find(key);
  if (it == q.end()) {
    return fallback;
  }
  std::size_t v = 0;
  const auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc() || p != it->second.data() + it->second.size()) {
    return std::nullopt;
  }
  return v;
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash);
  }
  return out;
}

// A JSON object request body with no fields but `allowed`; otherwise nullopt, and `refusal`
// is the answer to give.
std::optional<json::object> parse_body_object(std::string_view body, std::size_t max_depth,
                                              std::initializer_list<std::string_view> allowed,
                                              ApiResponse& refusal) {
  auto parsed = parse_json_strict(body, {.max_bytes = kMaxJsonBodyBytes, .max_depth = max_depth});
  if (!parsed) {
    refusal = api_error(parsed.error());
    return std::nullopt;
  }
  if (!parsed->is_object()) {
    refusal = api_error(400, "bad_request", "body must be a JSON object");
    return std::nullopt;
  }
  if (auto r =
          json_field::reject_unknown(parsed->get_object(), allowed, core::error::invalid_argument);
      !r) {
    refusal = api_error(400, "bad_request", r.error().detail);
    return std::nullopt;
  }
  return std::move(parsed->get_object());
}

ApiResponse method_not_allowed() {
  return api_error(405, "method_not_allowed", "method not allowed on this resource");
}

// --- the upload -------------------------------------------------------------------------------

// The artifact's file name for DDI agents: the upload's own name without any directory, with
// every character outside [A-Za-z0-9._+-] replaced, so that it is one safe URL path segment.
// An upload without a usable name gets NAME-VERSION.bin.
std::string artifact_filename(std::string_view sent, const Manifest& m) {
  constexpr std::size_t kMaxFilename = 128;
  if (const auto slash = sent.find_last_of("/\\"); slash != std::string_view::npos) {
    sent.remove_prefix(slash + 1);
  }
  std::string out;
  for (const char c : sent.substr(0, kMaxFilename)) {
    const bool safe = std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' ||
                      c == '-' || c == '+';
    out += safe ? c : '_';
  }
  if (out.empty() || out.front() == '.') {
    return storage::default_artifact_filename(m.name, m.version.to_string());
  }
  // DDI serves NAME.MD5SUM as NAME's checksum: an artifact may not take such a name itself.
  if (out.ends_with(".MD5SUM")) {
    out[out.size() - 7] = '_';
  }
  return out;
}

class MultipartImageUpload final : public ImageUpload {
 public:
  MultipartImageUpload(Backend& backend, const std::vector<PublicKey>& trusted,
                       std::size_t threshold, std::uint64_t max_bytes, std::string boundary,
                       std::unique_ptr<storage::BlobWriter> writer,
                       const AdminService::Uploaded& uploaded)
      : backend_(backend),
        trusted_(trusted),
        threshold_(threshold),
        max_bytes_(max_bytes),
        uploaded_(uploaded),
        writer_(std::move(writer)),
        parser_(std::move(boundary),
                {.on_part_begin =
                     [this](std::string_view name, std::string_view filename) {
                       return begin_part(name, filename);
                     },
                 .on_part_data = [this](std::string_view b) { return part_data(b); },
                 .on_part_end = [this]() { return end_part(); }}) {}

  result<void> feed(std::string_view bytes) override {
    received_ += bytes.size();
    // The body may hold a manifest and part headers besides the image: allow a little slack.
    if (received_ > max_bytes_ + kMaxEnvelopeBytes + 64 * 1024) {
      return Error(error::payload_too_large, "upload over the configured limit");
    }
    return parser_.feed(bytes);
  }

  ApiResponse finish(std::int64_t now) override {
    if (auto r = parser_.finish(); !r) {
      return api_error(r.error());
    }
    if (!manifest_seen_ || !image_seen_) {
      return api_error(400, "bad_request", "parts 'manifest' and 'image' are both required");
    }
    auto verified = verify();
    if (!verified) {
      return api_error(verified.error());
    }
    auto digest = writer_->commit();
    if (!digest) {
      return api_error(digest.error());
    }
    // The SHA-1 and MD5 that DDI agents are given come after the answer (ArtifactHashing).
    storage::NewImage image{.name = verified->manifest.name,
                            .version = verified->manifest.version.to_string(),
                            .models = verified->manifest.models,
                            .size_bytes = verified->manifest.size_bytes,
                            .sha256 = *digest,
                            .envelope = manifest_,
                            .signer_key_ids = verified->signer_key_ids,
                            .description = verified->manifest.description,
                            .created_at = now,
                            .filename = artifact_filename(filename_, verified->manifest),
                            .sha1_hex = {},
                            .md5_hex = {}};
    auto added =
        backend_.with_catalog([&](storage::Catalog& catalog) -> result<storage::ImageRecord> {
          auto id = storage::add_image(catalog, backend_.blobs(), image);
          if (!id) {
            // The blob is durable but unused: drop it unless another image shares it.
            auto users = catalog.count_images_with_blob(*digest);
            if (users && *users == 0) {
              (void)backend_.blobs().remove(*digest);
            }
            return id.error();
          }
          return catalog.find_image(*id);
        });
    if (!added) {
      return api_error(added.error());
    }
    if (uploaded_) {
      uploaded_(added->id);
    }
    return ok_json(201, image_json(*added, true));
  }

 private:
  result<void> begin_part(std::string_view name, std::string_view filename) {
    if (name == "manifest" && !manifest_seen_) {
      part_ = Part::manifest;
      manifest_seen_ = true;
      return {};
    }
    if (name == "image" && !image_seen_) {
      part_ = Part::image;
      image_seen_ = true;
      filename_ = filename;
      return {};
    }
    return Error(core::error::invalid_argument,
                 "unexpected or repeated part '" + std::string(name) + "'");
  }

  result<void> part_data(std::string_view bytes) {
    if (part_ == Part::manifest) {
      if (manifest_.size() + bytes.size() > kMaxEnvelopeBytes) {
        return Error(core::error::document_too_large, "manifest over 64 KiB");
      }
      manifest_.append(bytes);
      return {};
    }
    if (writer_->bytes_written() + bytes.size() > max_bytes_) {
      return Error(error::payload_too_large,
                   "image over the " + std::to_string(max_bytes_) + "-byte limit");
    }
    // With the manifest already known, refuse the first byte past its size. Only the size: the
    // blob writer hashes every byte, and verify() checks that digest.
    if (size_bound_ && bytes.size() > *size_bound_ - writer_->bytes_written()) {
      return Error(core::error::too_many_bytes,
                   "more than the manifest's " + std::to_string(*size_bound_) + " bytes");
    }
    return writer_->write(bytes);
  }

  result<void> end_part() {
    if (part_ == Part::manifest) {
      // Parse (not yet trust) the manifest to bound the image as it streams in.
      if (auto env = parse_envelope(manifest_)) {
        if (auto m = parse_manifest(env->payload)) {
          size_bound_ = m->size_bytes;
        }
      }
    }
    part_ = Part::none;
    return {};
  }

  result<VerifiedManifest> verify() {
    auto verified = verify_envelope_json(manifest_, trusted_, threshold_);
    if (!verified) {
      return verified.error();
    }
    const Manifest& m = verified->manifest;
    if (writer_->bytes_written() != m.size_bytes) {
      return Error(core::error::size_mismatch, std::to_string(writer_->bytes_written()) +
                                                   " bytes uploaded, manifest says " +
                                                   std::to_string(m.size_bytes));
    }
    if (writer_->digest_so_far() != m.sha256) {
      return Error(core::error::digest_mismatch, "image SHA-256 differs from the manifest");
    }
    return verified;
  }

  enum class Part { none, manifest, image };
  Backend& backend_;
  const std::vector<PublicKey>& trusted_;
  std::size_t threshold_;
  std::uint64_t max_bytes_;
  AdminService::Uploaded uploaded_;
  std::unique_ptr<storage::BlobWriter> writer_;
  MultipartParser parser_;
  Part part_ = Part::none;
  bool manifest_seen_ = false;
  bool image_seen_ = false;
  std::string manifest_;
  std::optional<std::uint64_t> size_bound_;  // the parsed (not yet verified) manifest's size
  std::string filename_;                     // the image part's, as sent
  std::uint64_t received_ = 0;
};

}  // namespace

result<std::string> AdminService::authenticate(std::string_view authorization) {
  constexpr std::string_view kPrefix = "Bearer ";
  if (authorization.size() <= kPrefix.size() ||
      authorization.substr(0, kPrefix.size()) != kPrefix) {
    return Error(error::unauthorized, "send Authorization: Bearer <token>");
  }
  const std::string hash = hex_encode(sha256(authorization.substr(kPrefix.size())));
  auto token = backend_.with_catalog(
      [&](storage::Catalog& catalog) { return catalog.find_live_token(hash); });
  if (!token) {
    if (token.error() == storage::error::not_found) {
      return Error(error::unauthorized, "invalid or revoked token");
    }
    return token.error();
  }
  return token->name;
}

result<std::unique_ptr<ImageUpload>> AdminService::begin_upload(
    std::string_view content_type, std::optional<std::uint64_t> content_length) {
  auto boundary = multipart_boundary(content_type);
  if (!boundary) {
    return Error(error::unsupported_media_type, "send multipart/form-data with a boundary");
  }
  if (content_length && *content_length > limits_.max_image_bytes + kMaxEnvelopeBytes + 65536) {
    return Error(error::payload_too_large,
                 "upload over the " + std::to_string(limits_.max_image_bytes) + "-byte limit");
  }
  auto writer = backend_.blobs().begin_write();
  if (!writer) {
    return writer.error();
  }
  return std::unique_ptr<ImageUpload>(std::make_unique<MultipartImageUpload>(
      backend_, trusted_keys_, threshold_, limits_.max_image_bytes, std::move(*boundary),
      std::move(*writer), uploaded_));
}

ApiResponse AdminService::handle(std::string_view method, std::string_view path,
                                 const std::map<std::string, std::string>& query,
                                 std::string_view body, std::int64_t now) {
  const auto seg = split_path(path);
  if (seg.empty()) {
    return api_error(404, "not_found", "no such resource");
  }
  const bool get = method == "GET";
  const bool del = method == "DELETE";
  const bool post = method == "POST";
  if (seg[0] == "images") {
    if (seg.size() == 1) {
      return get ? list_images() : method_not_allowed();
    }
    auto id = parse_id(seg[1]);
    if (seg.size() != 2 || !id) {
      return api_error(404, "not_found", "no such image");
    }
    return get ? get_image(*id) : del ? delete_image(*id) : method_not_allowed();
  }
  if (seg[0] == "devices") {
    if (seg.size() == 1) {
      return get ? list_devices(query) : method_not_allowed();
    }
    if (!validate_identifier(seg[1], "device id")) {
      return api_error(404, "not_found", "no such device");
    }
    if (seg.size() == 2) {
      return get ? get_device(seg[1]) : method_not_allowed();
    }
    if (seg.size() == 3 && seg[2] == "events") {
      return get ? device_events(seg[1], query) : method_not_allowed();
    }
    if (seg.size() == 3 && seg[2] == "psk") {
      return method == "PUT" ? put_psk(seg[1], body, now)
             : del           ? delete_psk(seg[1])
                             : method_not_allowed();
    }
    return api_error(404, "not_found", "no such resource");
  }
  if (seg[0] == "deployments") {
    if (seg.size() == 1) {
      return get ? list_deployments() : post ? create_deployment(body, now) : method_not_allowed();
    }
    auto id = parse_id(seg[1]);
    if (seg.size() != 2 || !id) {
      return api_error(404, "not_found", "no such deployment");
    }
    return get ? get_deployment(*id) : del ? cancel_deployment(*id, now) : method_not_allowed();
  }
  if (seg[0] == "stats" && seg.size() == 1) {
    return get ? fleet_stats() : method_not_allowed();
  }
  return api_error(404, "not_found", "no such resource");
}

ApiResponse AdminService::fleet_stats() {
  auto stats = backend_.with_catalog([](storage::Catalog& c) { return c.fleet_stats(20); });
  if (!stats) {
    return api_error(stats.error());
  }
  auto counts = [](const std::vector<std::pair<std::string, std::int64_t>>& in) {
    json::array out;
    for (const auto& [key, n] : in) {
      out.emplace_back(json::object{{"key", key}, {"devices", n}});
    }
    return out;
  };
  json::array failures;
  for (const auto& d : stats->recent_failures) {
    failures.emplace_back(device_json(d));
  }
  return ok_json(200, json::object{{"devices", stats->devices},
                                   {"by_version", counts(stats->by_version)},
                                   {"by_model", counts(stats->by_model)},
                                   {"by_state", counts(stats->by_state)},
                                   {"recent_failures", std::move(failures)}});
}

ApiResponse AdminService::get_deployment(std::int64_t id) {
  auto found = backend_.with_catalog(
      [&](storage::Catalog& c)
          -> result<std::pair<storage::DeploymentRecord, storage::DeploymentProgress>> {
        auto progress = c.deployment_progress(id);
        if (!progress) {
          return progress.error();
        }
        auto all = c.list_deployments();
        if (!all) {
          return all.error();
        }
        for (auto& d : *all) {
          if (d.id == id) {
            return std::pair{std::move(d), *progress};
          }
        }
        return Error(storage::error::not_found, "deployment " + std::to_string(id));
      });
  if (!found) {
    return api_error(found.error());
  }
  json::object o = deployment_json(found->first);
  const auto& p = found->second;
  o["progress"] = json::object{{"targeted", p.targeted},
                               {"at_version", p.at_version},
                               {"in_progress", p.in_progress},
                               {"failed", p.failed}};
  return ok_json(200, o);
}

ApiResponse AdminService::list_images() {
  auto images = backend_.with_catalog([](storage::Catalog& c) { return c.list_images(); });
  if (!images) {
    return api_error(images.error());
  }
  json::array out;
  for (const auto& i : *images) {
    out.emplace_back(image_json(i, false));
  }
  return ok_json(200, json::object{{"images", std::move(out)}});
}

ApiResponse AdminService::get_image(std::int64_t id) {
  auto image = backend_.with_catalog([&](storage::Catalog& c) { return c.find_image(id); });
  if (!image) {
    return api_error(image.error());
  }
  return ok_json(200, image_json(*image, true));
}

ApiResponse AdminService::delete_image(std::int64_t id) {
  auto r = backend_.with_catalog(
      [&](storage::Catalog& c) { return storage::remove_image(c, backend_.blobs(), id); });
  if (!r) {
    return api_error(r.error());
  }
  return {204, ""};
}

ApiResponse AdminService::list_devices(const std::map<std::string, std::string>& q) {
  storage::DeviceQuery query;
  for (auto [key, field] : {std::pair{"model", &query.model}, std::pair{"version", &query.version},
                            std::pair{"state", &query.state}, std::pair{"q", &query.id_prefix}}) {
    if (auto it = q.find(key); it != q.end() && !it->second.empty()) {
      *field = it->second;
    }
  }
  auto limit = parse_count(q, "limit", 50);
  auto offset = parse_count(q, "offset", 0);
  if (!limit || !offset || *limit == 0 || *limit > storage::kMaxPageSize) {
    return api_error(400, "bad_request", "limit must be 1-1000 and offset a non-negative integer");
  }
  query.limit = *limit;
  query.offset = *offset;
  if (auto it = q.find("sort"); it != q.end()) {
    using Sort = storage::DeviceQuery::Sort;
    const std::map<std::string, Sort> sorts = {{"id", Sort::id},
                                               {"last_seen", Sort::last_seen},
                                               {"version", Sort::version},
                                               {"model", Sort::model},
                                               {"state", Sort::state}};
    auto s = sorts.find(it->second);
    if (s == sorts.end()) {
      return api_error(400, "bad_request", "sort must be id, last_seen, version, model or state");
    }
    query.sort = s->second;
  }
  if (auto it = q.find("order"); it != q.end()) {
    if (it->second != "asc" && it->second != "desc") {
      return api_error(400, "bad_request", "order must be asc or desc");
    }
    query.descending = it->second == "desc";
  }
  auto page = backend_.with_catalog([&](storage::Catalog& c) { return c.list_devices(query); });
  if (!page) {
    return api_error(page.error());
  }
  json::array out;
  for (const auto& d : page->devices) {
    out.emplace_back(device_json(d));
  }
  return ok_json(200, json::object{{"devices", std::move(out)},
                                   {"total", page->total},
                                   {"limit", query.limit},
                                   {"offset", query.offset}});
}

ApiResponse AdminService::get_device(std::string_view id) {
  auto d = backend_.with_catalog([&](storage::Catalog& c) { return c.find_device(id); });
  if (!d) {
    return api_error(d.error());
  }
  return ok_json(200, device_json(*d));
}

ApiResponse AdminService::device_events(std::string_view id,
                                        const std::map<std::string, std::string>& q) {
  auto limit = parse_count(q, "limit", 100);
  auto after = parse_count(q, "after", 0);
  auto before = parse_count(q, "before", 0);
  if (!limit || !after || !before || *limit == 0 || *limit > storage::kMaxPageSize) {
    return api_error(400, "bad_request", "limit must be 1-1000, after and before event ids");
  }
  storage::EventQuery page{.limit = *limit};
  if (auto it = q.find("order"); it != q.end() && it->second != "asc") {
    if (it->second != "desc") {
      return api_error(400, "bad_request", "order must be asc or desc");
    }
    page.newest_first = true;
  }
  if (page.newest_first ? *after != 0 : *before != 0) {
    return api_error(400, "bad_request", "after pages order=asc, before pages order=desc");
  }
  page.cursor = static_cast<std::int64_t>(page.newest_first ? *before : *after);
  auto events =
      backend_.with_catalog([&](storage::Catalog& c) -> result<std::vector<storage::DeviceEvent>> {
        if (auto d = c.find_device(id); !d) {
          return d.error();
        }
        return c.list_events(id, page);
      });
  if (!events) {
    return api_error(events.error());
  }
  json::array out;
  for (const auto& e : *events) {
    out.emplace_back(json::object{{"id", e.id},
                                  {"at", e.at},
                                  {"kind", e.kind},
                                  {"state", e.state},
                                  {"version", e.version},
                                  {"result", opt(e.result)},
                                  {"message", opt(e.message)},
                                  {"image_id", opt(e.image_id)}});
  }
  return ok_json(200, json::object{{"events", std::move(out)}});
}

ApiResponse AdminService::put_psk(std::string_view device_id, std::string_view body,
                                  std::int64_t now) {
  ApiResponse refusal;
  auto parsed = parse_body_object(body, 2, {"identity", "key"}, refusal);
  if (!parsed) {
    return refusal;
  }
  const json::object& o = *parsed;
  const auto kind = core::error::invalid_argument;
  auto named = json_field::get_optional_string(o, "identity", kind);
  auto key_hex = json_field::get_string(o, "key", kind);
  if (!named) {
    return api_error(400, "bad_request", named.error().detail);
  }
  if (!key_hex) {
    return api_error(400, "bad_request", key_hex.error().detail);
  }
  const std::string_view identity = named->value_or(device_id);
  if (auto ok = validate_identifier(identity, "PSK identity"); !ok) {
    return api_error(400, "bad_request", ok.error().detail);
  }
  // The key is never echoed, not even in an error.
  auto key = hex_decode(*key_hex);
  if (!key || key->size() < kMinPskBytes || key->size() > kMaxPskBytes) {
    return api_error(400, "bad_request", "field 'key': 16 to 64 bytes, hex encoded");
  }
  storage::PskCredential psk{std::string(device_id), std::string(identity), std::move(*key)};
  auto stored = backend_.with_catalog([&](storage::Catalog& c) { return c.put_psk(psk, now); });
  OPENSSL_cleanse(psk.key.data(), psk.key.size());
  if (!stored) {
    return api_error(stored.error());
  }
  return ok_json(
      200,
      json::object{{"device_id", psk.device_id}, {"identity", psk.identity}, {"updated_at", now}});
}

ApiResponse AdminService::delete_psk(std::string_view device_id) {
  auto r = backend_.with_catalog([&](storage::Catalog& c) { return c.delete_psk(device_id); });
  if (!r) {
    return api_error(r.error());
  }
  return {204, ""};
}

ApiResponse AdminService::create_deployment(std::string_view body, std::int64_t now) {
  ApiResponse refusal;
  auto parsed = parse_body_object(
      body, 3, {"image_id", "devices", "models", "allow_downgrade", "action_type"}, refusal);
  if (!parsed) {
    return refusal;
  }
  const json::object& o = *parsed;
  const auto kind = core::error::invalid_argument;
  auto image_id = json_field::get_uint64(o, "image_id", kind);
  if (!image_id || *image_id == 0) {
    return api_error(400, "bad_request", "field 'image_id': must be a positive integer");
  }
  storage::NewDeployment d;
  d.image_id = static_cast<std::int64_t>(*image_id);
  d.created_at = now;
  for (auto [name, target] : {std::pair{"devices", &d.devices}, std::pair{"models", &d.models}}) {
    if (!o.contains(name)) {
      continue;
    }
    auto arr = json_field::get_array(o, name, kind);
    if (!arr || (*arr)->size() > 10000) {
      return api_error(400, "bad_request",
                       std::string("field '") + name + "': must be an array of identifiers");
    }
    for (const auto& v : **arr) {
      if (!v.is_string() || !validate_identifier(v.get_string().c_str(), name)) {
        return api_error(400, "bad_request",
                         std::string("field '") + name + "': must be an array of identifiers");
      }
      target->emplace_back(v.get_string());
    }
  }
  if (const json::value* v = o.if_contains("allow_downgrade")) {
    if (!v->is_bool()) {
      return api_error(400, "bad_request", "field 'allow_downgrade': must be a boolean");
    }
    d.allow_downgrade = v->get_bool();
  }
  if (const json::value* v = o.if_contains("action_type")) {
    auto type = v->is_string() ? storage::parse_action_type(v->get_string()) : std::nullopt;
    if (!type) {
      return api_error(400, "bad_request",
                       "field 'action_type': must be forced, soft or downloadonly");
    }
    d.action_type = *type;
  }
  if (d.devices.empty() && d.models.empty()) {
    return api_error(400, "bad_request", "give at least one device or model");
  }
  auto created = backend_.with_catalog(
      [&](storage::Catalog& c) -> result<std::vector<storage::DeploymentRecord>> {
        auto id = c.create_deployment(d);
        if (!id) {
          return id.error();
        }
        auto all = c.list_deployments();
        if (!all) {
          return all.error();
        }
        std::erase_if(*all, [&](const auto& r) { return r.id != *id; });
        return all;
      });
  if (!created) {
    return api_error(created.error());
  }
  return ok_json(201, deployment_json(created->front()));
}

ApiResponse AdminService::list_deployments() {
  auto all = backend_.with_catalog([](storage::Catalog& c) { return c.list_deployments(); });
  if (!all) {
    return api_error(all.error());
  }
  json::array out;
  for (const auto& d : *all) {
    out.emplace_back(deployment_json(d));
  }
  return ok_json(200, json::object{{"deployments", std::move(out)}});
}

ApiResponse AdminService::cancel_deployment(std::int64_t id, std::int64_t now) {
  auto r = backend_.with_catalog([&](storage::Catalog& c) { return c.cancel_deployment(id, now); });
  if (!r) {
    return api_error(r.error());
  }
  return {204, ""};
}

}  // namespace fwdepot::server
