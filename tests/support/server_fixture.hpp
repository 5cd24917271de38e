// SPDX-License-Identifier: Apache-2.0
// A real fwdepot server on 127.0.0.1 ephemeral ports, with a PKI, signing key and admin token
// made by our own code, and curl as the outside client.
#pragma once

#include "fwdepot/certs/pki.hpp"
#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/manifest.hpp"
#include "fwdepot/server/server.hpp"
#include "fwdepot/storage/sqlite_catalog.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <map>
#include <thread>

namespace fwdepot::testing {

inline void write_file(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    throw std::runtime_error("cannot write " + p.string());
  }
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Replaces a file the way operators (and `fwdepot certs revoke`) do: write aside, rename.
inline void replace_file(const std::filesystem::path& p, std::string_view bytes) {
  const auto tmp = p.string() + ".new";
  write_file(tmp, bytes);
  std::filesystem::rename(tmp, p);
}

struct HttpReply {
  int exit_code = -1;  // curl's
  int status = 0;
  std::string body;
  std::string err;  // curl's stderr: TLS alerts and the like
};

class ServerFixture : public ::testing::Test {
 protected:
  static std::int64_t now() { return static_cast<std::int64_t>(std::time(nullptr)); }

  void SetUp() override {
    ca_.emplace(certs::CertificateAuthority::create("fwdepot test CA", now() - 60, 30).value());
    write_file(dir_ / "ca.pem", ca_->certificate().to_pem());
    auto server_key = PrivateKey::generate(KeyType::ecdsa_p256).value();
    const std::vector<std::string> dns{"localhost"};
    const std::vector<std::string> ips{"127.0.0.1"};
    auto server_cert = ca_->issue_server(server_key.public_key(), dns, ips, now() - 60, 30).value();
    write_crl({});
    signing_key_.emplace(PrivateKey::generate(KeyType::ecdsa_p256).value());

    options_.device_listen = "127.0.0.1:0";
    options_.admin_listen = "127.0.0.1:0";
    options_.threads = 2;
    options_.ca_pem = ca_->certificate().to_pem();
    options_.server_cert_pem = server_cert.to_pem();
    options_.server_key_pem = server_key.to_pem().value();
    options_.crl_path = dir_ / "crl.pem";
    options_.database = dir_ / "fwdepot.db";
    options_.blobs = dir_ / "blobs";
    options_.trusted_keys = {signing_key_->public_key()};

    token_ = "test-token-" + hex_encode(random_bytes(16).value());
    auto catalog = storage::SqliteCatalog::open(options_.database).value();
    ASSERT_TRUE(catalog->create_token("ci", hex_encode(sha256(token_)), now()));
  }

  void TearDown() override { stop_server(); }

  /// Starts the server with options_ (tests adjust them first).
  void start_server() {
    auto server = server::Server::create(options_);
    ASSERT_TRUE(server) << server.error();
    server_ = std::move(*server);
    thread_ = std::thread([this] { server_->run(); });
  }

  void stop_server() {
    if (server_) {
      server_->stop();
      thread_.join();
      server_.reset();
    }
  }

  std::string admin_url(std::string_view path) const {
    return "https://127.0.0.1:" + std::to_string(server_->admin_port()) + std::string(path);
  }
  std::string device_url(std::string_view path) const {
    return "https://127.0.0.1:" + std::to_string(server_->device_port()) + std::string(path);
  }

  /// Issues a device certificate and key as DIR/ID.pem and DIR/ID.key; returns the serial.
  std::string issue_device(const std::string& id, const std::string& model,
                           std::int64_t not_before = 0, int days = 30) {
    auto key = PrivateKey::generate(KeyType::ecdsa_p256).value();
    auto cert =
        ca_->issue_device(key.public_key(), id, model, not_before ? not_before : now() - 60, days)
            .value();
    write_file(dir_ / (id + ".pem"), cert.to_pem());
    write_file(dir_ / (id + ".key"), key.to_pem().value());
    return cert.serial_hex();
  }

  void write_crl(const std::vector<certs::RevokedEntry>& revoked) {
    auto crl = ca_->make_crl(revoked, ++crl_number_, now() - 60, 30).value();
    replace_file(dir_ / "crl.pem", crl.to_pem());
  }

  /// Signs `payload` as NAME VERSION for `models` with `key` (default: the trusted key) and
  /// writes DIR/FILE.bin and DIR/FILE.dsse.
  void make_image(const std::string& file, const std::string& name, const std::string& version,
                  const std::vector<std::string>& models, const std::string& payload,
                  const PrivateKey* key = nullptr) {
    Manifest m;
    m.name = name;
    m.version = Version::parse(version).value();
    m.models = models;
    m.size_bytes = payload.size();
    m.sha256 = sha256(payload);
    m.created = "2026-11-22T00:00:00Z";
    const PrivateKey* keys[] = {key ? key : &*signing_key_};
    write_file(dir_ / (file + ".bin"), payload);
    write_file(dir_ / (file + ".dsse"), sign_manifest(m, keys).value().to_json());
  }

  /// curl with our CA as the only trust anchor, bounded in time; status and body come back.
  HttpReply curl(std::vector<std::string> args) const {
    std::vector<std::string> argv{"curl",
                                  "--silent",
                                  "--show-error",
                                  "--max-time",
                                  "30",
                                  "--cacert",
                                  (dir_ / "ca.pem").string(),
                                  "--write-out",
                                  "\n%{http_code}"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto p = run_process(argv);
    HttpReply r{p.exit_code, 0, std::move(p.out), std::move(p.err)};
    const auto nl = r.body.rfind('\n');
    if (nl != std::string::npos) {
      r.status = std::atoi(r.body.c_str() + nl + 1);
      r.body.resize(nl);
    }
    return r;
  }

  HttpReply admin(const std::string& method, const std::string& path, std::string body = {},
                  std::vector<std::string> extra = {}) const {
    std::vector<std::string> args{"-X", method, "-H", "Authorization: Bearer " + token_};
    if (!body.empty()) {
      args.insert(args.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(admin_url(path));
    return curl(args);
  }

  /// As device ID (its certificate from issue_device).
  HttpReply device(const std::string& id, const std::string& method, const std::string& path,
                   std::string body = {}, std::vector<std::string> extra = {}) const {
    std::vector<std::string> args{"-X",     method,
                                  "--cert", (dir_ / (id + ".pem")).string(),
                                  "--key",  (dir_ / (id + ".key")).string()};
    if (!body.empty()) {
      args.insert(args.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(device_url(path));
    return curl(args);
  }

  /// An accepted upload returns once the server has also stored the image's SHA-1 and MD5,
  /// which it computes after answering (and before which DDI does not offer the image): the
  /// test then sees the image as an agent would.
  HttpReply upload(const std::string& file) const {
    HttpReply r =
        curl({"-H", "Authorization: Bearer " + token_, "-F",
              "manifest=@" + (dir_ / (file + ".dsse")).string(), "-F",
              "image=@" + (dir_ / (file + ".bin")).string(), admin_url("/api/v1/images")});
    if (r.status == 201) {
      wait_for_artifact_hashes(r.body);
    }
    return r;
  }

  // Asks for the image `created` (an upload's answer) until its "sha1" is filled in: each ask
  // is a curl run, at most 600 of them.
  void wait_for_artifact_hashes(const std::string& created) const {
    const auto at = created.find("\"id\":");
    ASSERT_NE(at, std::string::npos) << created;
    const auto digits = created.find_first_not_of("0123456789", at + 5);
    const std::string id = created.substr(at + 5, digits - (at + 5));
    for (int i = 0; i < 600; ++i) {
      auto got = admin("GET", "/api/v1/images/" + id);
      ASSERT_EQ(got.status, 200) << got.body;
      if (got.body.find("\"sha1\":\"\"") == std::string::npos) {
        return;
      }
    }
    ADD_FAILURE() << "image " << id << " never got its SHA-1 and MD5";
  }

  /// Everything the server stores: a full SQL dump (via the sqlite3 program, a reader of its
  /// own) and every file under the blob store with its size. Equal snapshots mean a refused
  /// request changed nothing.
  std::string storage_snapshot() const {
    auto dump = run_process({"sqlite3", "-readonly", options_.database.string(), ".dump"});
    EXPECT_EQ(dump.exit_code, 0) << dump.err;
    std::map<std::string, std::uintmax_t> files;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(options_.blobs, ec);
         it != std::filesystem::recursive_directory_iterator(); ++it) {
      if (it->is_regular_file()) {
        files[it->path().lexically_relative(options_.blobs).string()] = it->file_size();
      }
    }
    std::string out = dump.out;
    for (const auto& [name, size] : files) {
      out += "\nfile " + name + " " + std::to_string(size);
    }
    return out;
  }

  std::string metrics() const { return curl({admin_url("/metrics")}).body; }

  TempDir dir_;
  std::optional<certs::CertificateAuthority> ca_;
  std::optional<PrivateKey> signing_key_;
  std::uint64_t crl_number_ = 0;
  std::string token_;
  server::ServerOptions options_;
  std::unique_ptr<server::Server> server_;
  std::thread thread_;
};

}  // namespace fwdepot::testing
