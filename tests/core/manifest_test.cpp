// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/manifest.hpp"

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <vector>

namespace fwdepot {
namespace {

Manifest sample_manifest() {
  Manifest m;
  m.name = "sensor-fw";
  m.version = *Version::parse("1.2.3-rc.1+build.7");
  m.models = {"sensor-v1", "sensor-v2"};
  m.size_bytes = 4096;
  m.sha256 = sha256("payload");
  m.created = "2026-11-22T10:00:00Z";
  m.description = "Fixes \"quoted\" things";
  return m;
}

PrivateKey make_key(KeyType type = KeyType::ecdsa_p256) {
  auto key = PrivateKey::generate(type);
  EXPECT_TRUE(key);
  return std::move(*key);
}

Envelope sign_with(const Manifest& m, std::vector<const PrivateKey*> keys) {
  auto env = sign_manifest(m, keys);
  EXPECT_TRUE(env) << env.error().message();
  return *env;
}

TEST(Manifest, RoundTripsThroughJson) {
  const Manifest m = sample_manifest();
  auto parsed = parse_manifest(m.to_json());
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(*parsed, m);
  Manifest no_description = m;
  no_description.description.clear();
  EXPECT_EQ(no_description.to_json().find("description"), std::string::npos);
}

// Replaces or removes one field of the sample manifest's JSON.
std::string with_field(std::string_view field, std::optional<boost::json::value> value) {
  boost::json::object o = boost::json::parse(sample_manifest().to_json()).as_object();
  if (value) {
    o[field] = *value;
  } else {
    o.erase(field);
  }
  return boost::json::serialize(o);
}

TEST(Manifest, RejectsMissingMistypedAndOutOfRangeFields) {
  using boost::json::value;
  const std::vector<std::pair<std::string, std::optional<value>>> bad = {
      {"name", std::nullopt},
      {"name", value(5)},
      {"name", value("../etc")},
      {"version", std::nullopt},
      {"version", value("1.2")},
      {"version", value(1)},
      {"models", std::nullopt},
      {"models", value("m")},
      {"models", boost::json::array{}},
      {"models", boost::json::array{"a", "a"}},
      {"models", boost::json::array{1}},
      {"size", std::nullopt},
      {"size", value(-1)},
      {"size", value(0)},
      {"size", value("12")},
      {"size", value(1.5)},
      {"size", value(std::uint64_t{1} << 53)},
      {"sha256", std::nullopt},
      {"sha256", value("abc")},
      {"sha256", value(std::string(64, 'A'))},
      {"created", std::nullopt},
      {"created", value("yesterday")},
      {"created", value("2026-02-30T00:00:00Z")},
      {"created", value("2026-11-22T10:00:00+01:00")},
      {"description", value(7)},
      {"description", value(std::string(5000, 'x'))},
      {"extra", value(1)},
      {"schema", std::nullopt},
      {"schema", value("1")},
  };
  for (const auto& [field, v] : bad) {
    const std::string text = with_field(field, v);
    auto parsed = parse_manifest(text);
    EXPECT_FALSE(parsed) << text;
    if (!parsed) {
      EXPECT_EQ(parsed.error(), core::error::invalid_manifest) << text;
      EXPECT_NE(parsed.error().detail.find(field), std::string::npos)
          << "detail '" << parsed.error().detail << "' does not name " << field;
    }
  }
}

TEST(Manifest, RejectsUnknownSchemaVersions) {
  for (int schema : {0, 2, 99}) {
    auto parsed = parse_manifest(with_field("schema", boost::json::value(schema)));
    ASSERT_FALSE(parsed);
    EXPECT_EQ(parsed.error(), core::error::unsupported_schema);
  }
}

TEST(Manifest, RejectsDuplicateKeysTrailingGarbageAndOversize) {
  std::string text = sample_manifest().to_json();
  std::string dup = text;
  dup.insert(1, R"("name":"other",)");
  EXPECT_EQ(parse_manifest(dup).error(), core::error::malformed_json);
  EXPECT_EQ(parse_manifest(text + "x").error(), core::error::malformed_json);
  EXPECT_EQ(parse_manifest("[]").error(), core::error::invalid_manifest);
  std::string big = text;
  big.insert(1, "\"pad\":\"" + std::string(kMaxManifestBytes, 'p') + "\",");
  EXPECT_EQ(parse_manifest(big).error(), core::error::document_too_large);
}

TEST(Envelope, UsesTheDssePreAuthenticationEncoding) {
  // The example from the DSSE protocol specification.
  EXPECT_EQ(pre_authentication_encoding("http://example.com/HelloWorld", "hello world"),
            "DSSEv1 29 http://example.com/HelloWorld 11 hello world");
  auto key = make_key();
  const Envelope env = sign_with(sample_manifest(), {&key});
  ASSERT_EQ(env.signatures.size(), 1u);
  EXPECT_TRUE(key.public_key().verify(
      pre_authentication_encoding(kManifestPayloadType, env.payload), env.signatures[0].sig));
  EXPECT_FALSE(key.public_key().verify(env.payload, env.signatures[0].sig));
}

TEST(Envelope, VerifiesWithEveryKeyType) {
  for (KeyType type : {KeyType::ecdsa_p256, KeyType::ed25519, KeyType::rsa_2048, KeyType::rsa_3072,
                       KeyType::rsa_pss_2048, KeyType::rsa_pss_3072}) {
    auto key = make_key(type);
    const std::string json = sign_with(sample_manifest(), {&key}).to_json();
    const std::vector<PublicKey> trusted = {key.public_key()};
    auto verified = verify_envelope_json(json, trusted, 1);
    ASSERT_TRUE(verified) << to_string(type) << ": " << verified.error().message();
    EXPECT_EQ(verified->manifest, sample_manifest());
    EXPECT_EQ(verified->signer_key_ids, std::vector<std::string>{key.key_id()});
  }
}

TEST(Envelope, RejectsUntrustedKey) {
  auto signer = make_key();
  auto other = make_key();
  const std::vector<PublicKey> trusted = {other.public_key()};
  auto r = verify_envelope(sign_with(sample_manifest(), {&signer}), trusted, 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), core::error::signature_threshold_not_met);
  EXPECT_NE(r.error().detail.find("not trusted"), std::string::npos) << r.error().detail;
}

TEST(Envelope, NeedsThresholdDistinctTrustedKeys) {
  auto a = make_key();
  auto b = make_key(KeyType::ed25519);
  auto c = make_key(KeyType::rsa_pss_2048);
  const std::vector<PublicKey> trusted = {a.public_key(), b.public_key(), c.public_key()};
  const Envelope one = sign_with(sample_manifest(), {&a});
  const Envelope two = sign_with(sample_manifest(), {&a, &c});
  EXPECT_TRUE(verify_envelope(one, trusted, 1));
  EXPECT_EQ(verify_envelope(one, trusted, 2).error(), core::error::signature_threshold_not_met);
  auto ok = verify_envelope(two, trusted, 2);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->signer_key_ids, (std::vector<std::string>{a.key_id(), c.key_id()}));
  EXPECT_EQ(verify_envelope(two, trusted, 3).error(), core::error::signature_threshold_not_met);
  EXPECT_EQ(verify_envelope(two, trusted, 4).error(), core::error::invalid_argument);
  EXPECT_EQ(verify_envelope(two, trusted, 0).error(), core::error::invalid_argument);
}

TEST(Envelope, CountsDuplicateSignaturesByOneKeyOnce) {
  auto a = make_key();
  auto b = make_key();
  const std::vector<PublicKey> trusted = {a.public_key(), b.public_key()};
  Envelope env = sign_with(sample_manifest(), {&a});
  // A second, equally valid signature by the same key (ECDSA is randomised, so it differs).
  auto again = a.sign(pre_authentication_encoding(env.payload_type, env.payload));
  ASSERT_TRUE(again);
  env.signatures.push_back({a.key_id(), *again});
  auto r = verify_envelope(env, trusted, 2);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), core::error::signature_threshold_not_met);
  // Without key ids the duplicate must not be matched to the other trusted key either.
  for (auto& s : env.signatures) {
    s.key_id.clear();
  }
  EXPECT_EQ(verify_envelope(env, trusted, 2).error(), core::error::signature_threshold_not_met);
  EXPECT_TRUE(verify_envelope(env, trusted, 1));
  // Listing a trusted key twice does not lower the bar either.
  const std::vector<PublicKey> twice = {a.public_key(), a.public_key()};
  EXPECT_EQ(verify_envelope(env, twice, 2).error(), core::error::invalid_argument);
}

TEST(Envelope, RefusesToSignWithOneKeyTwice) {
  auto a = make_key();
  EXPECT_EQ(sign_manifest(sample_manifest(), std::vector<const PrivateKey*>{&a, &a}).error(),
            core::error::invalid_argument);
  EXPECT_EQ(sign_manifest(sample_manifest(), std::vector<const PrivateKey*>{}).error(),
            core::error::invalid_argument);
}

TEST(Envelope, RejectsOtherPayloadTypes) {
  auto a = make_key();
  Envelope env = sign_with(sample_manifest(), {&a});
  env.payload_type = "application/vnd.in-toto+json";
  env.signatures[0].sig = *a.sign(pre_authentication_encoding(env.payload_type, env.payload));
  const std::vector<PublicKey> trusted = {a.public_key()};
  EXPECT_EQ(verify_envelope(env, trusted, 1).error(), core::error::wrong_payload_type);
}

TEST(Envelope, RejectsEveryFlippedBit) {
  auto key = make_key();
  const std::string json = sign_with(sample_manifest(), {&key}).to_json();
  const std::vector<PublicKey> trusted = {key.public_key()};
  ASSERT_TRUE(verify_envelope_json(json, trusted, 1));
  for (std::size_t i = 0; i < json.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = json;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
      EXPECT_FALSE(verify_envelope_json(flipped, trusted, 1))
          << "bit " << bit << " of byte " << i << " ('" << json[i] << "') went unnoticed";
    }
  }
}

TEST(Envelope, RejectsMalformedEnvelopes) {
  auto key = make_key();
  const Envelope good = sign_with(sample_manifest(), {&key});
  const std::string b64 = base64_encode(good.payload);
  const std::string sig = base64_encode(good.signatures[0].sig);
  const std::vector<std::string> bad = {
      "",
      "[]",
      R"({"payloadType":"x","payload":")" + b64 + R"("})",
      R"({"payloadType":"x","payload":")" + b64 + R"(","signatures":[]})",
      R"({"payloadType":"x","payload":"!!","signatures":[{"keyid":"","sig":")" + sig + R"("}]})",
      R"({"payloadType":"x","payload":")" + b64 + R"(","signatures":[{"keyid":""}]})",
      R"({"payloadType":"x","payload":")" + b64 + R"(","signatures":[{"sig":""}]})",
      R"({"payloadType":"x","payload":")" + b64 + R"(","signatures":["x"]})",
      R"({"payloadType":1,"payload":")" + b64 + R"(","signatures":[{"sig":")" + sig + R"("}]})",
      R"({"payloadType":"x","payload":")" + b64 + R"(","signatures":[{"sig":")" + sig +
          R"(","extra":1}]})",
  };
  for (const auto& text : bad) {
    auto r = parse_envelope(text);
    EXPECT_FALSE(r) << text;
    if (!r) {
      EXPECT_TRUE(r.error() == core::error::invalid_envelope ||
                  r.error() == core::error::malformed_json)
          << text << ": " << r.error().message();
    }
  }
  std::string many = R"({"payloadType":"x","payload":")" + b64 + R"(","signatures":[)";
  for (std::size_t i = 0; i <= kMaxSignatures; ++i) {
    many += (i ? "," : "") + std::string(R"({"sig":")") + sig + "\"}";
  }
  many += "]}";
  EXPECT_EQ(parse_envelope(many).error(), core::error::invalid_envelope);
  std::string huge = good.to_json();
  huge.insert(huge.size() - 1, ",\"pad\":\"" + std::string(kMaxEnvelopeBytes, 'p') + "\"");
  EXPECT_EQ(parse_envelope(huge).error(), core::error::document_too_large);
}

TEST(Envelope, ChecksSignaturesBeforeParsingThePayload) {
  // A payload that is not a manifest but is validly signed fails as a manifest; the same
  // payload unsigned fails on the signature, before anyone parses it.
  auto key = make_key();
  Envelope env{
      .payload_type = std::string(kManifestPayloadType), .payload = "{nope", .signatures = {}};
  const std::vector<PublicKey> trusted = {key.public_key()};
  env.signatures.push_back({key.key_id(), "not a signature"});
  EXPECT_EQ(verify_envelope(env, trusted, 1).error(), core::error::signature_threshold_not_met);
  env.signatures[0].sig = *key.sign(pre_authentication_encoding(env.payload_type, env.payload));
  EXPECT_EQ(verify_envelope(env, trusted, 1).error(), core::error::malformed_json);
}

}  // namespace
}  // namespace fwdepot
