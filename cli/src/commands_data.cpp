// SPDX-License-Identifier: Apache-2.0
// init, certs, token: commands that work on a data directory.
#include "commands.hpp"

#include "config.hpp"
#include "file_io.hpp"
#include "fwdepot/certs/pki.hpp"
#include "fwdepot/core/ids.hpp"
#include "fwdepot/storage/image_store.hpp"
#include "fwdepot/storage/sqlite_catalog.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <iostream>

namespace fwdepot::cli {
namespace {

namespace fs = std::filesystem;

constexpr int kCaValidityDays = 3650;
constexpr int kServerValidityDays = 397;
// Devices and the server refuse everything once the CRL is past its nextUpdate (fail closed),
// so `certs revoke` re-signs it and this leaves a long margin for a development PKI.
constexpr int kCrlValidityDays = 365;
constexpr fs::perms kPrivateDirMode = fs::perms::owner_all;

std::int64_t now() { return static_cast<std::int64_t>(std::time(nullptr)); }

result<void> ensure_dir(const fs::path& dir, std::optional<fs::perms> mode = {}) {
  std::error_code ec;
  if (fs::create_directories(dir, ec) && mode) {
    fs::permissions(dir, *mode, ec);
  }
  if (ec) {
    return Error(ec, dir.string());
  }
  return {};
}

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

result<certs::CertificateAuthority> load_ca(const Config& c) {
  auto cert = read_small_file(c.ca_cert);
  if (!cert) {
    return cert.error();
  }
  auto key = read_small_file(c.ca_key);
  if (!key) {
    return key.error();
  }
  auto ca = certs::CertificateAuthority::from_pem(*cert, *key);
  if (!ca) {
    return Error(ca.error().code, c.ca_cert.string() + ": " + ca.error().message());
  }
  return ca;
}

result<std::unique_ptr<storage::SqliteCatalog>> open_catalog(const Config& c) {
  auto catalog = storage::SqliteCatalog::open(c.database);
  if (!catalog) {
    return Error(catalog.error().code, c.database.string() + ": " + catalog.error().message());
  }
  return catalog;
}

// Re-signs the CRL from the catalog's list of revoked certificates.
result<certs::Crl> write_crl(const Config& c, const certs::CertificateAuthority& ca,
                             storage::Catalog& catalog) {
  auto revoked = catalog.revoked_certificates();
  if (!revoked) {
    return revoked.error();
  }
  std::vector<certs::RevokedEntry> entries;
  for (const auto& r : *revoked) {
    entries.push_back({r.serial_hex, r.revoked_at.value_or(0)});
  }
  std::uint64_t number = 1;
  if (auto old_pem = read_small_file(c.crl)) {
    if (auto old = certs::Crl::from_pem(*old_pem)) {
      number = old->number() + 1;
    }
  }
  auto crl = ca.make_crl(entries, number, now(), kCrlValidityDays);
  if (!crl) {
    return crl.error();
  }
  if (auto w = replace_file(c.crl, crl->to_pem(), kPublicFileMode); !w) {
    return w.error();
  }
  return crl;
}

// Creates what is missing of the PKI and never touches what exists.
result<void> init_pki(const Config& c, const InitOptions& o, std::vector<std::string>& log) {
  const bool have_ca_cert = path_exists(c.ca_cert);
  const bool have_ca_key = path_exists(c.ca_key);
  if (have_ca_cert != have_ca_key && !path_exists(c.server_cert)) {
    return Error(core::error::invalid_argument, "found only one of " + c.ca_cert.string() +
                                                    " and " + c.ca_key.string() +
                                                    "; restore the other or remove both");
  }
  std::optional<certs::CertificateAuthority> ca;
  if (!have_ca_cert && !have_ca_key) {
    auto created =
        certs::CertificateAuthority::create("fwdepot development CA", now(), kCaValidityDays);
    if (!created) {
      return created.error();
    }
    auto key_pem = created->key().to_pem();
    if (!key_pem) {
      return key_pem.error();
    }
    // Key first: a crash in between leaves a key without a certificate, which init refuses
    // to paper over, rather than a certificate nobody can sign with.
    if (auto w = write_new_file(c.ca_key, *key_pem, kPrivateFileMode); !w) {
      return w.error();
    }
    if (auto w = write_new_file(c.ca_cert, created->certificate().to_pem(), kPublicFileMode); !w) {
      return w.error();
    }
    log.push_back("created the development CA " + c.ca_cert.string());
    ca = std::move(*created);
  }

  if (!path_exists(c.server_cert)) {
    if (!ca) {
      auto loaded = load_ca(c);
      if (!loaded) {
        return loaded.error();
      }
      ca = std::move(*loaded);
    }
    // Reuse a server key left by an interrupted init: never overwrite a key.
    std::optional<PrivateKey> key;
    if (path_exists(c.server_key)) {
      auto pem = read_small_file(c.server_key);
      if (!pem) {
        return pem.error();
      }
      auto loaded = PrivateKey::from_pem(*pem);
      if (!loaded) {
        return Error(loaded.error().code, c.server_key.string() + ": " + loaded.error().message());
      }
      key = std::move(*loaded);
    } else {
      auto generated = PrivateKey::generate(KeyType::ecdsa_p256);
      if (!generated) {
        return generated.error();
      }
      auto key_pem = generated->to_pem();
      if (!key_pem) {
        return key_pem.error();
      }
      if (auto w = write_new_file(c.server_key, *key_pem, kPrivateFileMode); !w) {
        return w.error();
      }
      key = std::move(*generated);
    }
    std::vector<std::string> names = o.server_names;
    std::vector<std::string> ips = o.ips;
    if (names.empty() && ips.empty()) {
      names = {"localhost"};
      ips = {"127.0.0.1", "::1"};
    }
    auto cert = ca->issue_server(key->public_key(), names, ips, now(), kServerValidityDays);
    if (!cert) {
      return cert.error();
    }
    if (auto w = write_new_file(c.server_cert, cert->to_pem(), kPublicFileMode); !w) {
      return w.error();
    }
    std::string all;
    for (const auto& n : names) {
      all += " " + n;
    }
    for (const auto& ip : ips) {
      all += " " + ip;
    }
    log.push_back("issued the server certificate " + c.server_cert.string() + " for" + all);
  }
  return {};
}

result<void> init_signing_key(const fs::path& dir, std::vector<std::string>& log) {
  const fs::path key_path = dir / "signing.key";
  const fs::path pub_path = dir / "signing.pub";
  if (path_exists(key_path)) {
    return {};
  }
  auto key = PrivateKey::generate(KeyType::ecdsa_p256);
  if (!key) {
    return key.error();
  }
  auto pem = key->to_pem();
  if (!pem) {
    return pem.error();
  }
  if (auto w = write_new_file(key_path, *pem, kPrivateFileMode); !w) {
    return w.error();
  }
  if (auto w = replace_file(pub_path, key->public_key().to_pem(), kPublicFileMode); !w) {
    return w.error();
  }
  log.push_back("created the release signing key " + key_path.string() + " (key id " +
                key->key_id() + ")");
  return {};
}

}  // namespace

int run_init(const InitOptions& o) {
  std::vector<std::string> log;
  // Bad input must change nothing, so check it before the first file is written.
  if (!o.server_names.empty() || !o.ips.empty()) {
    if (auto ok = certs::validate_server_names(o.server_names, o.ips); !ok) {
      return fail(ok.error().message());
    }
  }
  if (auto r = ensure_dir(o.data_dir); !r) {
    return fail(r.error().message());
  }
  const fs::path config_path = o.data_dir / "fwdepot.toml";
  if (!path_exists(config_path)) {
    if (auto w = write_new_file(config_path, default_config_toml(), kPublicFileMode); !w) {
      return fail(w.error().message());
    }
    log.push_back("wrote " + config_path.string());
  }
  auto config = load_config(o.data_dir);
  if (!config) {
    return fail(config.error().message());
  }
  for (const auto& dir : {config->ca_key.parent_path(), config->server_key.parent_path()}) {
    if (auto r = ensure_dir(dir, kPrivateDirMode); !r) {
      return fail(r.error().message());
    }
  }
  if (auto r = ensure_dir(o.data_dir / "keys", kPrivateDirMode); !r) {
    return fail(r.error().message());
  }
  if (auto r = init_pki(*config, o, log); !r) {
    return fail(r.error().message());
  }
  if (auto r = init_signing_key(o.data_dir / "keys", log); !r) {
    return fail(r.error().message());
  }
  auto catalog = open_catalog(*config);
  if (!catalog) {
    return fail(catalog.error().message());
  }
  if (!path_exists(config->crl)) {
    auto ca = load_ca(*config);
    if (!ca) {
      return fail(ca.error().message());
    }
    if (auto crl = write_crl(*config, *ca, **catalog); !crl) {
      return fail(crl.error().message());
    }
    log.push_back("signed an empty CRL " + config->crl.string());
  }
  auto blobs = storage::FileBlobStore::open(config->blobs);
  if (!blobs) {
    return fail(blobs.error().message());
  }
  auto report = storage::recover_storage(**catalog, **blobs);
  if (!report) {
    return fail(report.error().message());
  }
  if (report->removed_temp_files > 0) {
    log.push_back("removed " + std::to_string(report->removed_temp_files) +
                  " half-written blob(s) left by a crash");
  }
  for (const auto& d : report->orphan_blobs) {
    std::cerr << "fwdepot: warning: blob " << hex_encode(d) << " belongs to no image\n";
  }
  for (auto id : report->broken_images) {
    std::cerr << "fwdepot: warning: image " << id << " has a missing or damaged blob\n";
  }
  if (log.empty()) {
    std::cout << o.data_dir.string() << " is already initialized; nothing changed\n";
  }
  for (const auto& line : log) {
    std::cout << line << "\n";
  }
  return 0;
}

int run_certs_issue_device(const IssueDeviceOptions& o) {
  auto config = load_config(o.data_dir);
  if (!config) {
    return fail(config.error().message());
  }
  if (auto ok = validate_identifier(o.id, "device id"); !ok) {
    return fail(ok.error().message());
  }
  if (!o.model.empty()) {
    if (auto ok = validate_identifier(o.model, "model"); !ok) {
      return fail(ok.error().message());
    }
  }
  const fs::path cert_path = o.out_prefix.string() + ".pem";
  const fs::path key_path = o.out_prefix.string() + ".key";
  for (const auto& p : {cert_path, key_path}) {
    if (path_exists(p)) {
      return fail(p.string() + ": already exists; refusing to overwrite it");
    }
  }
  auto ca = load_ca(*config);
  if (!ca) {
    return fail(ca.error().message());
  }
  auto catalog = open_catalog(*config);
  if (!catalog) {
    return fail(catalog.error().message());
  }
  auto key = PrivateKey::generate(KeyType::ecdsa_p256);
  if (!key) {
    return fail(key.error().message());
  }
  const std::int64_t issued_at = now();
  auto cert = ca->issue_device(key->public_key(), o.id, o.model, issued_at, o.validity_days);
  if (!cert) {
    return fail(cert.error().message());
  }
  // Recorded before it is written out: a certificate that exists must be revocable by id.
  if (auto r = (*catalog)->record_certificate(
          {cert->serial_hex(), o.id, o.model, issued_at, cert->not_after(), std::nullopt});
      !r) {
    return fail(r.error().message());
  }
  auto key_pem = key->to_pem();
  if (!key_pem) {
    return fail(key_pem.error().message());
  }
  if (auto w = write_new_file(key_path, *key_pem, kPrivateFileMode); !w) {
    return fail(w.error().message());
  }
  if (auto w = write_new_file(cert_path, cert->to_pem(), kPublicFileMode); !w) {
    return fail(w.error().message());
  }
  std::cout << "issued " << cert_path.string() << " and " << key_path.string() << " for device "
            << o.id << (o.model.empty() ? "" : " (model " + o.model + ")") << ", serial "
            << cert->serial_hex() << "\n";
  return 0;
}

int run_certs_revoke(const RevokeOptions& o) {
  auto config = load_config(o.data_dir);
  if (!config) {
    return fail(config.error().message());
  }
  auto ca = load_ca(*config);
  if (!ca) {
    return fail(ca.error().message());
  }
  auto catalog = open_catalog(*config);
  if (!catalog) {
    return fail(catalog.error().message());
  }
  auto count = (*catalog)->revoke_certificates(o.id, now());
  if (!count) {
    return fail(count.error().message());
  }
  auto crl = write_crl(*config, *ca, **catalog);
  if (!crl) {
    return fail(crl.error().message());
  }
  std::cout << "revoked " << *count << " certificate(s) of device " << o.id << "; "
            << config->crl.string() << " (number " << crl->number() << ") lists "
            << crl->revoked_count() << "\n";
  return 0;
}

int run_certs_renew_server(const RenewServerOptions& o) {
  auto config = load_config(o.data_dir);
  if (!config) {
    return fail(config.error().message());
  }
  auto ca = load_ca(*config);
  if (!ca) {
    return fail(ca.error().message());
  }
  std::vector<std::string> names = o.server_names;
  std::vector<std::string> ips = o.ips;
  if (names.empty() && ips.empty()) {
    auto current = read_small_file(config->server_cert);
    if (!current) {
      return fail(current.error().message());
    }
    auto chain = certs::Certificate::chain_from_pem(*current);
    if (!chain || chain->empty()) {
      return fail(config->server_cert.string() + ": no certificate to take the names from; " +
                  "give --server-name or --ip");
    }
    names = chain->front().dns_names();
    ips = chain->front().ip_addresses();
  }
  auto key = PrivateKey::generate(KeyType::ecdsa_p256);
  if (!key) {
    return fail(key.error().message());
  }
  auto cert = ca->issue_server(key->public_key(), names, ips, now(), kServerValidityDays);
  if (!cert) {
    return fail(cert.error().message());
  }
  auto key_pem = key->to_pem();
  if (!key_pem) {
    return fail(key_pem.error().message());
  }
  // Each file is replaced by a rename, so it is always whole. Between the two renames the key
  // does not match the certificate: a server reloading then refuses the pair and keeps its
  // last good one.
  if (auto w = replace_file(config->server_key, *key_pem, kPrivateFileMode); !w) {
    return fail(w.error().message());
  }
  if (auto w = replace_file(config->server_cert, cert->to_pem(), kPublicFileMode); !w) {
    return fail(w.error().message() +
                "; the new key is in place without its certificate: " + "run renew-server again");
  }
  std::string all;
  for (const auto& n : names) {
    all += " " + n;
  }
  for (const auto& ip : ips) {
    all += " " + ip;
  }
  std::cout << "renewed the server certificate " << config->server_cert.string() << " (serial "
            << cert->serial_hex() << ") for" << all
            << "; send SIGHUP to a running server to use it\n";
  return 0;
}

int run_token_create(const TokenOptions& o) {
  auto config = load_config(o.data_dir);
  if (!config) {
    return fail(config.error().message());
  }
  if (auto ok = validate_identifier(o.name, "token name"); !ok) {
    return fail(ok.error().message());
  }
  auto catalog = open_catalog(*config);
  if (!catalog) {
    return fail(catalog.error().message());
  }
  // 256 random bits, or a secret the operator made: a plain SHA-256 is the right hash for a
  // secret this strong, and lets the server find a token with one indexed lookup.
  std::string token;
  if (o.from_file.empty()) {
    auto secret = random_bytes(32);
    if (!secret) {
      return fail(secret.error().message());
    }
    token = "fwd_" + base64url_encode(*secret);
  } else {
    auto text = read_small_file(o.from_file, 4096);
    if (!text) {
      return fail(text.error().message());
    }
    token = *text;
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) {
      token.pop_back();
    }
    // What a Bearer header carries (RFC 6750 b64token), long enough to be unguessable.
    const bool charset = std::all_of(token.begin(), token.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) != 0 ||
             std::string_view("-._~+/=").find(ch) != std::string_view::npos;
    });
    if (token.size() < 32 || token.size() > 512 || !charset) {
      return fail(o.from_file.string() +
                  ": a token must be 32 to 512 characters of A-Z a-z 0-9 - . _ ~ + / =");
    }
  }
  if (auto r = (*catalog)->create_token(o.name, hex_encode(sha256(token)), now()); !r) {
    return fail(r.error().message());
  }
  if (o.from_file.empty()) {
    std::cerr << "admin token '" << o.name << "' created; it is shown once, store it now\n";
    std::cout << token << "\n";
  } else {
    std::cerr << "admin token '" << o.name << "' created from " << o.from_file.string() << "\n";
  }
  return 0;
}

int run_token_revoke(const TokenOptions& o) {
  auto config = load_config(o.data_dir);
  if (!config) {
    return fail(config.error().message());
  }
  auto catalog = open_catalog(*config);
  if (!catalog) {
    return fail(catalog.error().message());
  }
  if (auto r = (*catalog)->revoke_token(o.name, now()); !r) {
    return fail(r.error().message());
  }
  std::cout << "revoked admin token '" << o.name << "'\n";
  return 0;
}

}  // namespace fwdepot::cli
