// SPDX-License-Identifier: Apache-2.0
// keys generate, sign, verify: the release engineer's offline tools. None needs a data dir.
#include "commands.hpp"

#include "file_io.hpp"
#include "fwdepot/core/keys.hpp"
#include "fwdepot/core/manifest.hpp"
#include "fwdepot/core/verifier.hpp"

#include <ctime>
#include <iostream>

namespace fwdepot::cli {
namespace {

std::string utc_now_rfc3339() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Stops at the first chunk past the manifest's size, so an over-long file fails fast instead
// of being hashed to its end.
result<void> verify_image_file(const std::filesystem::path& path, ImageVerifier& verifier) {
  return for_each_chunk(path, [&](std::string_view chunk) { return verifier.update(chunk); });
}

}  // namespace

int run_keys_generate(const KeysGenerateOptions& o) {
  auto type = parse_key_type(o.type);
  if (!type) {
    return fail(type.error().message());
  }
  auto key = PrivateKey::generate(*type);
  if (!key) {
    return fail(key.error().message());
  }
  auto pem = key->to_pem();
  if (!pem) {
    return fail(pem.error().message());
  }
  const std::filesystem::path key_path = o.out_prefix.string() + ".key";
  const std::filesystem::path pub_path = o.out_prefix.string() + ".pub";
  if (auto w = write_new_file(key_path, *pem, kPrivateFileMode); !w) {
    return fail(w.error().message());
  }
  if (auto w = write_new_file(pub_path, key->public_key().to_pem(), kPublicFileMode); !w) {
    return fail(w.error().message());
  }
  std::cout << "wrote " << key_path.string() << " and " << pub_path.string() << "\nkey id "
            << key->key_id() << " (" << to_string(*type) << ")\n";
  return 0;
}

int run_sign(const SignOptions& o) {
  std::optional<std::string> password;
  if (o.key_password_file) {
    auto p = read_small_file(*o.key_password_file);
    if (!p) {
      return fail(p.error().message());
    }
    password = std::move(*p);
    while (!password->empty() && (password->back() == '\n' || password->back() == '\r')) {
      password->pop_back();
    }
  }
  std::vector<PrivateKey> keys;
  for (const auto& path : o.keys) {
    auto pem = read_small_file(path);
    if (!pem) {
      return fail(pem.error().message());
    }
    auto key = PrivateKey::from_pem(*pem, password);
    if (!key) {
      return fail(path.string() + ": " + key.error().message());
    }
    keys.push_back(std::move(*key));
  }

  Manifest m;
  m.name = o.name;
  auto version = Version::parse(o.version);
  if (!version) {
    return fail(version.error().message());
  }
  m.version = std::move(*version);
  m.models = o.models;
  m.description = o.description;
  m.created = utc_now_rfc3339();
  auto digest = hash_file(o.image);
  if (!digest) {
    return fail(digest.error().message());
  }
  m.size_bytes = digest->size_bytes;
  m.sha256 = digest->sha256;

  std::vector<const PrivateKey*> signers;
  for (const auto& k : keys) {
    signers.push_back(&k);
  }
  auto env = sign_manifest(m, signers);
  if (!env) {
    return fail(env.error().message());
  }
  if (auto w = write_new_file(o.out, env->to_json() + "\n", kPublicFileMode); !w) {
    return fail(w.error().message());
  }
  std::cout << "signed " << m.name << " " << m.version.to_string() << " (" << m.size_bytes
            << " bytes, sha256 " << hex_encode(m.sha256) << ") with " << keys.size()
            << " key(s) -> " << o.out.string() << "\n";
  return 0;
}

int run_verify(const VerifyOptions& o) {
  std::vector<PublicKey> trusted;
  for (const auto& path : o.pubs) {
    auto pem = read_small_file(path);
    if (!pem) {
      return fail(pem.error().message());
    }
    auto key = PublicKey::from_pem(*pem);
    if (!key) {
      return fail(path.string() + ": " + key.error().message());
    }
    trusted.push_back(std::move(*key));
  }
  auto envelope = read_small_file(o.manifest, kMaxEnvelopeBytes);
  if (!envelope) {
    return fail(envelope.error().message());
  }
  auto verified = verify_envelope_json(*envelope, trusted, o.threshold);
  if (!verified) {
    return fail(o.manifest.string() + ": " + verified.error().message());
  }
  auto verifier = ImageVerifier::create(verified->manifest);
  if (!verifier) {
    return fail(verifier.error().message());
  }
  auto streamed = verify_image_file(o.image, *verifier);
  auto finished = streamed ? verifier->finish() : streamed;
  if (!finished) {
    return fail(o.image.string() + ": " + finished.error().message());
  }
  const Manifest& m = verified->manifest;
  std::cout << "OK " << m.name << " " << m.version.to_string() << " (" << m.size_bytes
            << " bytes) signed by";
  for (const auto& id : verified->signer_key_ids) {
    std::cout << " " << id;
  }
  std::cout << "\n";
  return 0;
}

}  // namespace fwdepot::cli
