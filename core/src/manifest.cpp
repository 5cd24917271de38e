// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/manifest.hpp"

#include "fwdepot/core/ids.hpp"
#include "fwdepot/core/json.hpp"

#include <boost/json/serialize.hpp>

#include <algorithm>

namespace fwdepot {
namespace {

namespace json = boost::json;
using core::error;

Error manifest_error(std::string_view field, std::string_view why) {
  return Error(error::invalid_manifest, "field '" + std::string(field) + "': " + std::string(why));
}

bool is_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int to_int(std::string_view s) {
  int v = 0;
  for (char c : s) {
    v = v * 10 + (c - '0');
  }
  return v;
}

// RFC 3339 restricted to the one spelling we emit: "YYYY-MM-DDTHH:MM:SSZ". One spelling keeps
// signed manifests byte-for-byte reproducible and comparisons trivial.
bool is_rfc3339_utc(std::string_view t) {
  if (t.size() != 20 || t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' ||
      t[16] != ':' || t[19] != 'Z') {
    return false;
  }
  const std::string_view year = t.substr(0, 4), month = t.substr(5, 2), day = t.substr(8, 2),
                         hour = t.substr(11, 2), minute = t.substr(14, 2), second = t.substr(17, 2);
  for (auto part : {year, month, day, hour, minute, second}) {
    if (!is_digits(part)) {
      return false;
    }
  }
  const int y = to_int(year), mo = to_int(month), d = to_int(day);
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1]) {
    return false;
  }
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo == 2 && d == 29 && !leap) {
    return false;
  }
  return to_int(hour) < 24 && to_int(minute) < 60 && to_int(second) < 61;
}

}  // namespace

bool Manifest::lists_model(std::string_view model) const {
  return std::find(models.begin(), models.end(), model) != models.end();
}

bool operator==(const Manifest& a, const Manifest& b) {
  return a.name == b.name && a.version.to_string() == b.version.to_string() &&
         a.models == b.models && a.size_bytes == b.size_bytes && a.sha256 == b.sha256 &&
         a.created == b.created && a.description == b.description;
}

std::string Manifest::to_json() const {
  json::object o;
  o["schema"] = kManifestSchema;
  o["name"] = name;
  o["version"] = version.to_string();
  json::array m;
  for (const auto& model : models) {
    m.emplace_back(model);
  }
  o["models"] = std::move(m);
  o["size"] = size_bytes;
  o["sha256"] = hex_encode(sha256);
  o["created"] = created;
  if (!description.empty()) {
    o["description"] = description;
  }
  return json::serialize(o);
}

result<Manifest> parse_manifest(std::string_view text) {
  auto parsed = parse_json_strict(text, {.max_bytes = kMaxManifestBytes, .max_depth = 4});
  if (!parsed) {
    return parsed.error();
  }
  if (!parsed->is_object()) {
    return Error(error::invalid_manifest, "not a JSON object");
  }
  const json::object& o = parsed->get_object();

  // The schema decides how to read everything else, so check it before anything else.
  const json::value* schema = o.if_contains("schema");
  if (schema == nullptr) {
    return manifest_error("schema", "missing");
  }
  if (!schema->is_int64() && !schema->is_uint64()) {
    return manifest_error("schema", "must be an integer");
  }
  if (!schema->is_int64() || schema->get_int64() != kManifestSchema) {
    return Error(error::unsupported_schema, "schema " + json::serialize(*schema) +
                                                " (this fwdepot reads schema " +
                                                std::to_string(kManifestSchema) + ")");
  }
  if (auto r = json_field::reject_unknown(
          o, {"schema", "name", "version", "models", "size", "sha256", "created", "description"},
          error::invalid_manifest);
      !r) {
    return r.error();
  }

  Manifest m;
  auto name = json_field::get_string(o, "name", error::invalid_manifest);
  if (!name) {
    return name.error();
  }
  if (auto ok = validate_identifier(*name, "name"); !ok) {
    return manifest_error("name", ok.error().detail);
  }
  m.name = *name;

  auto version_text = json_field::get_string(o, "version", error::invalid_manifest);
  if (!version_text) {
    return version_text.error();
  }
  auto version = Version::parse(*version_text);
  if (!version) {
    return manifest_error("version", version.error().detail);
  }
  m.version = std::move(*version);

  auto models = json_field::get_array(o, "models", error::invalid_manifest);
  if (!models) {
    return models.error();
  }
  if ((*models)->empty() || (*models)->size() > kMaxModels) {
    return manifest_error("models", "must list 1 to " + std::to_string(kMaxModels) + " models");
  }
  for (const json::value& v : **models) {
    if (!v.is_string()) {
      return manifest_error("models", "entries must be strings");
    }
    const std::string_view model(v.get_string().data(), v.get_string().size());
    if (auto ok = validate_identifier(model, "model"); !ok) {
      return manifest_error("models", ok.error().detail);
    }
    if (m.lists_model(model)) {
      return manifest_error("models", "duplicate model '" + std::string(model) + "'");
    }
    m.models.emplace_back(model);
  }

  auto size = json_field::get_uint64(o, "size", error::invalid_manifest);
  if (!size) {
    return size.error();
  }
  if (*size == 0 || *size > kMaxImageBytes) {
    return manifest_error("size", "must be between 1 and 2^53-1 bytes");
  }
  m.size_bytes = *size;

  auto digest_text = json_field::get_string(o, "sha256", error::invalid_manifest);
  if (!digest_text) {
    return digest_text.error();
  }
  auto digest = parse_sha256_hex(*digest_text);
  if (!digest) {
    return manifest_error("sha256", digest.error().detail);
  }
  m.sha256 = *digest;

  auto created = json_field::get_string(o, "created", error::invalid_manifest);
  if (!created) {
    return created.error();
  }
  if (!is_rfc3339_utc(*created)) {
    return manifest_error("created", "must be an RFC 3339 UTC time like 2026-01-31T12:00:00Z");
  }
  m.created = *created;

  auto description = json_field::get_optional_string(o, "description", error::invalid_manifest);
  if (!description) {
    return description.error();
  }
  if (*description) {
    if ((*description)->size() > kMaxDescriptionBytes) {
      return manifest_error("description",
                            "longer than " + std::to_string(kMaxDescriptionBytes) + " bytes");
    }
    m.description = **description;
  }
  return m;
}

std::string Envelope::to_json() const {
  json::object o;
  o["payloadType"] = payload_type;
  o["payload"] = base64_encode(payload);
  json::array sigs;
  for (const auto& s : signatures) {
    sigs.emplace_back(json::object{{"keyid", s.key_id}, {"sig", base64_encode(s.sig)}});
  }
  o["signatures"] = std::move(sigs);
  return json::serialize(o);
}

result<Envelope> parse_envelope(std::string_view text) {
  auto parsed = parse_json_strict(text, {.max_bytes = kMaxEnvelopeBytes, .max_depth = 4});
  if (!parsed) {
    return parsed.error();
  }
  if (!parsed->is_object()) {
    return Error(error::invalid_envelope, "not a JSON object");
  }
  const json::object& o = parsed->get_object();
  if (auto r = json_field::reject_unknown(o, {"payloadType", "payload", "signatures"},
                                          error::invalid_envelope);
      !r) {
    return r.error();
  }
  Envelope env;
  auto type = json_field::get_string(o, "payloadType", error::invalid_envelope);
  if (!type) {
    return type.error();
  }
  env.payload_type = *type;
  auto payload_b64 = json_field::get_string(o, "payload", error::invalid_envelope);
  if (!payload_b64) {
    return payload_b64.error();
  }
  auto payload = base64_decode(*payload_b64);
  if (!payload) {
    return Error(error::invalid_envelope, "field 'payload': " + payload.error().detail);
  }
  env.payload = std::move(*payload);

  auto sigs = json_field::get_array(o, "signatures", error::invalid_envelope);
  if (!sigs) {
    return sigs.error();
  }
  if ((*sigs)->empty() || (*sigs)->size() > kMaxSignatures) {
    return Error(error::invalid_envelope, "field 'signatures': must hold 1 to " +
                                              std::to_string(kMaxSignatures) + " signatures");
  }
  for (const json::value& v : **sigs) {
    if (!v.is_object()) {
      return Error(error::invalid_envelope, "field 'signatures': entries must be objects");
    }
    const json::object& so = v.get_object();
    if (auto r = json_field::reject_unknown(so, {"keyid", "sig"}, error::invalid_envelope); !r) {
      return r.error();
    }
    auto key_id = json_field::get_optional_string(so, "keyid", error::invalid_envelope);
    if (!key_id) {
      return key_id.error();
    }
    auto sig_b64 = json_field::get_string(so, "sig", error::invalid_envelope);
    if (!sig_b64) {
      return sig_b64.error();
    }
    auto sig = base64_decode(*sig_b64);
    if (!sig || sig->empty()) {
      return Error(error::invalid_envelope, "field 'sig': not a non-empty base64 string");
    }
    env.signatures.push_back({std::string(key_id->value_or("")), std::move(*sig)});
  }
  return env;
}

std::string pre_authentication_encoding(std::string_view payload_type, std::string_view payload) {
  std::string out = "DSSEv1 ";
  out += std::to_string(payload_type.size());
  out += ' ';
  out += payload_type;
  out += ' ';
  out += std::to_string(payload.size());
  out += ' ';
  out += payload;
  return out;
}

result<Envelope> sign_manifest(const Manifest& manifest, std::span<const PrivateKey* const> keys) {
  if (keys.empty()) {
    return Error(error::invalid_argument, "at least one signing key is needed");
  }
  Envelope env{.payload_type = std::string(kManifestPayloadType),
               .payload = manifest.to_json(),
               .signatures = {}};
  // Refuse to emit a manifest we would reject ourselves.
  if (auto check = parse_manifest(env.payload); !check) {
    return check.error();
  }
  const std::string pae = pre_authentication_encoding(env.payload_type, env.payload);
  for (const PrivateKey* key : keys) {
    for (const auto& s : env.signatures) {
      if (s.key_id == key->key_id()) {
        return Error(error::invalid_argument, "key " + key->key_id() + " given twice");
      }
    }
    auto sig = key->sign(pae);
    if (!sig) {
      return sig.error();
    }
    env.signatures.push_back({key->key_id(), std::move(*sig)});
  }
  return env;
}

result<VerifiedManifest> verify_envelope(const Envelope& envelope,
                                         std::span<const PublicKey> trusted,
                                         std::size_t threshold) {
  std::vector<const PublicKey*> keys;
  for (const auto& k : trusted) {
    const bool seen = std::any_of(keys.begin(), keys.end(),
                                  [&](const PublicKey* p) { return p->key_id() == k.key_id(); });
    if (!seen) {
      keys.push_back(&k);
    }
  }
  if (threshold == 0 || threshold > keys.size()) {
    return Error(error::invalid_argument, "threshold " + std::to_string(threshold) + " with " +
                                              std::to_string(keys.size()) +
                                              " distinct trusted keys");
  }
  if (envelope.payload_type != kManifestPayloadType) {
    return Error(error::wrong_payload_type, "'" + envelope.payload_type + "'");
  }

  const std::string pae = pre_authentication_encoding(envelope.payload_type, envelope.payload);
  std::vector<std::string> counted;
  std::string why_not;
  auto note = [&](std::size_t i, std::string_view reason) {
    why_not += "; signature " + std::to_string(i + 1) + ": " + std::string(reason);
  };
  for (std::size_t i = 0; i < envelope.signatures.size(); ++i) {
    const Signature& sig = envelope.signatures[i];
    // The key id is only a hint: a signature without one is tried against every trusted key
    // not yet counted, so nothing is lost by a signer that omits it.
    const PublicKey* match = nullptr;
    bool already = false;
    for (const PublicKey* k : keys) {
      if (!sig.key_id.empty() && sig.key_id != k->key_id()) {
        continue;
      }
      if (std::find(counted.begin(), counted.end(), k->key_id()) != counted.end()) {
        already = true;
        continue;
      }
      if (k->verify(pae, sig.sig)) {
        match = k;
        break;
      }
    }
    if (match != nullptr) {
      counted.push_back(match->key_id());
    } else if (already) {
      note(i, "key already counted");
    } else if (!sig.key_id.empty() &&
               std::none_of(keys.begin(), keys.end(),
                            [&](const PublicKey* k) { return k->key_id() == sig.key_id; })) {
      note(i, "key " + sig.key_id.substr(0, 16) + "... is not trusted");
    } else {
      note(i, "invalid signature");
    }
  }
  if (counted.size() < threshold) {
    return Error(error::signature_threshold_not_met,
                 std::to_string(counted.size()) + " of " + std::to_string(threshold) +
                     " required trusted signatures are valid" + why_not);
  }
  auto manifest = parse_manifest(envelope.payload);
  if (!manifest) {
    return manifest.error();
  }
  return VerifiedManifest{std::move(*manifest), std::move(counted)};
}

result<VerifiedManifest> verify_envelope_json(std::string_view envelope_json,
                                              std::span<const PublicKey> trusted,
                                              std::size_t threshold) {
  auto env = parse_envelope(envelope_json);
  if (!env) {
    return env.error();
  }
  return verify_envelope(*env, trusted, threshold);
}

}  // namespace fwdepot
