// SPDX-License-Identifier: Apache-2.0
// The device side against the real server on loopback: the fwdepot-device agent (and the
// library under it) through full cycles, cut and killed downloads, a corrupted payload and every
// refusal a device must make on its own.
#include "fwdepot/client/file_handler.hpp"
#include "fwdepot/client/updater.hpp"
#include "support/relay.hpp"
#include "support/server_fixture.hpp"

#include <boost/json.hpp>
#include <csignal>

namespace fwdepot::testing {
namespace {

namespace json = boost::json;

std::string random_payload(std::size_t n) {
  const auto bytes = random_bytes(n).value();
  return {bytes.begin(), bytes.end()};
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

class ClientTest : public ServerFixture {
 protected:
  void SetUp() override {
    ServerFixture::SetUp();
    write_file(dir_ / "signing.pub", signing_key_->public_key().to_pem());
    issue_device("dev-1", "m1");
  }

  std::int64_t publish(const std::string& file, const std::string& deployment_extra = "") {
    auto up = upload(file);
    EXPECT_EQ(up.status, 201) << up.body << up.err;
    const auto id = json::parse(up.body).at("id").as_int64();
    auto dep = admin(
        "POST", "/api/v1/deployments",
        R"({"image_id":)" + std::to_string(id) + R"(,"models":["m1"])" + deployment_extra + "}");
    EXPECT_EQ(dep.status, 201) << dep.body;
    return id;
  }

  // fwdepot-device --once as dev-1 at 1.0.0 (unless its state says otherwise).
  ProcessResult agent(std::uint16_t port, std::vector<std::string> extra = {},
                      const std::function<void(pid_t)>& on_start = {},
                      const std::function<void(pid_t, const std::string&)>& on_output = {}) {
    std::vector<std::string> argv{FWDEPOT_DEVICE_AGENT,
                                  "--server",
                                  "https://127.0.0.1:" + std::to_string(port),
                                  "--cert",
                                  (dir_ / "dev-1.pem").string(),
                                  "--key",
                                  (dir_ / "dev-1.key").string(),
                                  "--cacert",
                                  (dir_ / "ca.pem").string(),
                                  "--trusted-key",
                                  (dir_ / "signing.pub").string(),
                                  "--model",
                                  "m1",
                                  "--state-dir",
                                  state_dir().string(),
                                  "--initial-version",
                                  "1.0.0",
                                  "--once"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_process(argv, on_start, on_output);
  }

  std::filesystem::path state_dir() const { return dir_ / "device-state"; }

  json::value device_record() {
    auto r = admin("GET", "/api/v1/devices/dev-1");
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  }
};

TEST_F(ClientTest, AgentUpdatesAndTheServerSeesTheWholeHistory) {
  start_server();
  const std::string payload = random_payload(300 * 1024 + 11);
  make_image("fw", "fw", "1.1.0", {"m1"}, payload);
  const auto id = publish("fw");

  auto run = agent(server_->device_port());
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_TRUE(contains(run.out, "updated to 1.1.0")) << run.out;
  EXPECT_EQ(read_file(state_dir() / "firmware.bin"), payload);

  const auto dev = device_record();
  EXPECT_EQ(dev.at("version"), "1.1.0");
  EXPECT_EQ(dev.at("last_result"), "success");
  const auto events = json::parse(admin("GET", "/api/v1/devices/dev-1/events").body);
  std::vector<std::string> seen;
  for (const auto& e : events.at("events").as_array()) {
    seen.push_back(std::string(e.at("version").as_string()) + " " +
                   std::string(e.at("state").as_string()) + " " +
                   (e.at("result").is_null() ? "-" : std::string(e.at("result").as_string())));
  }
  const std::vector<std::string> expected = {"1.0.0 idle -", "1.0.0 downloading initial",
                                             "1.0.0 downloaded initial", "1.0.0 updating initial",
                                             "1.1.0 idle success"};
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(events.at("events").as_array()[0].at("image_id"), json::value(id));

  // The next cycle finds nothing to do, and says so.
  auto again = agent(server_->device_port());
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_TRUE(contains(again.out, "no update, running 1.1.0")) << again.out;
}

TEST_F(ClientTest, ACutDownloadResumesWithARangeRequest) {
  start_server();
  const std::string payload = random_payload(4 * 1024 * 1024);
  make_image("fw", "fw", "1.1.0", {"m1"}, payload);
  publish("fw");
  Relay relay(server_->device_port());
  relay.cut_once_after(1024 * 1024);  // only the download carries that much

  auto run = agent(relay.port());
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_EQ(relay.cuts(), 1);
  EXPECT_EQ(read_file(state_dir() / "firmware.bin"), payload);
  const std::string m = metrics();
  EXPECT_TRUE(contains(m, "fwdepot_downloads_total{range=\"true\"} 1\n")) << m;
  EXPECT_TRUE(contains(m, "fwdepot_downloads_total{range=\"false\"} 1\n")) << m;
}

TEST_F(ClientTest, AKilledAgentResumesFromWhatItHadOnDisk) {
  start_server();
  const std::string payload = random_payload(4 * 1024 * 1024);
  make_image("fw", "fw", "1.1.0", {"m1"}, payload);
  publish("fw");
  {
    // The relay stops the download at 3.5 MiB so that it cannot finish; the agent is killed
    // as soon as it reports 2.2 MiB stored, by which point it has synced 2 MiB to disk.
    Relay relay(server_->device_port());
    relay.freeze_once_after(3 * 1024 * 1024 + 512 * 1024);
    bool killed = false;
    auto first = agent(relay.port(), {}, {}, [&](pid_t pid, const std::string& out) {
      const auto at = out.rfind("downloaded ");
      if (!killed && at != std::string::npos &&
          std::strtoull(out.c_str() + at + 11, nullptr, 10) >= 2'200'000) {
        killed = ::kill(pid, SIGKILL) == 0;
      }
    });
    EXPECT_TRUE(killed) << first.out;
    EXPECT_EQ(first.exit_code, 128 + SIGKILL);
  }
  EXPECT_FALSE(std::filesystem::exists(state_dir() / "firmware.bin"));

  auto second = agent(server_->device_port());
  ASSERT_EQ(second.exit_code, 0) << second.out << second.err;
  const auto at = second.out.find("resumed at byte ");
  ASSERT_NE(at, std::string::npos) << second.out;
  const auto resumed = std::strtoull(second.out.c_str() + at + 16, nullptr, 10);
  EXPECT_GE(resumed, 2u * 1024 * 1024);
  EXPECT_LT(resumed, 3u * 1024 * 1024);
  EXPECT_EQ(read_file(state_dir() / "firmware.bin"), payload);
  EXPECT_TRUE(contains(metrics(), "fwdepot_downloads_total{range=\"true\"} 1\n"));
}

TEST_F(ClientTest, APayloadCorruptedOnTheServerIsNeverInstalled) {
  start_server();
  const std::string payload = random_payload(200 * 1024);
  make_image("fw", "fw", "1.1.0", {"m1"}, payload);
  publish("fw");
  const std::string hex = hex_encode(sha256(payload));
  const auto blob = options_.blobs / "sha256" / hex.substr(0, 2) / hex;
  std::string corrupted = read_file(blob);
  corrupted[corrupted.size() / 2] ^= 0x01;
  write_file(blob, corrupted);

  auto run = agent(server_->device_port());
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_TRUE(contains(run.out, "update failed (integrity_failure)")) << run.out;
  EXPECT_FALSE(std::filesystem::exists(state_dir() / "firmware.bin"));
  EXPECT_FALSE(std::filesystem::exists(state_dir() / "version"));
  EXPECT_FALSE(std::filesystem::exists(state_dir() / "firmware.partial"));
  const auto dev = device_record();
  EXPECT_EQ(dev.at("version"), "1.0.0");
  EXPECT_EQ(dev.at("state"), "idle");
  EXPECT_EQ(dev.at("last_result"), "integrity_failure");
  EXPECT_TRUE(contains(std::string(dev.at("last_message").as_string()), "SHA-256"))
      << dev.at("last_message");
}

TEST_F(ClientTest, EachRefusalHasItsOwnErrorAndReachesTheServer) {
  // The server also trusts a second release key; the device does not.
  auto other_key = PrivateKey::generate(KeyType::ecdsa_p256).value();
  options_.trusted_keys.push_back(other_key.public_key());
  start_server();

  // 1. Signed by a key the server accepts but the device does not trust.
  make_image("untrusted", "fw", "1.1.0", {"m1"}, random_payload(1000), &other_key);
  const auto untrusted = publish("untrusted");
  auto r1 = agent(server_->device_port());
  EXPECT_EQ(r1.exit_code, 1);
  EXPECT_TRUE(contains(r1.out, "manifest not signed by trusted keys")) << r1.out;
  EXPECT_EQ(device_record().at("last_result"), "integrity_failure");
  ASSERT_EQ(admin("DELETE", "/api/v1/deployments/1").status, 204);

  // 2. A downgrade the server allows but the device does not.
  make_image("old", "fw", "0.9.0", {"m1"}, random_payload(1000));
  publish("old", R"(,"allow_downgrade":true)");
  auto r2 = agent(server_->device_port());
  EXPECT_EQ(r2.exit_code, 1);
  EXPECT_TRUE(contains(r2.out, "update failed (unsupported_package): offered version is not newer"))
      << r2.out;
  EXPECT_EQ(device_record().at("last_result"), "unsupported_package");
  ASSERT_EQ(admin("DELETE", "/api/v1/deployments/2").status, 204);

  // 3. A server whose catalog was altered to offer another model's image to this device.
  make_image("m2", "fw", "1.2.0", {"m2"}, random_payload(1000));
  const auto m2 = json::parse(upload("m2").body).at("id").as_int64();
  auto tamper = run_process(
      {"sqlite3", options_.database.string(),
       "UPDATE images SET models = '[\"m1\",\"m2\"]' WHERE id = " + std::to_string(m2)});
  ASSERT_EQ(tamper.exit_code, 0) << tamper.err;
  ASSERT_EQ(admin("POST", "/api/v1/deployments",
                  R"({"image_id":)" + std::to_string(m2) + R"(,"models":["m1"]})")
                .status,
            201);
  auto r3 = agent(server_->device_port());
  EXPECT_EQ(r3.exit_code, 1);
  EXPECT_TRUE(contains(r3.out, "image is not for this device model")) << r3.out;
  EXPECT_EQ(device_record().at("last_result"), "unsupported_package");
  EXPECT_FALSE(std::filesystem::exists(state_dir() / "firmware.bin"));
  (void)untrusted;

  // 4. A server certificate from another CA: refused in the handshake; the server counts the
  //    device's alert.
  {
    auto other_ca = certs::CertificateAuthority::create("other CA", now() - 60, 30).value();
    write_file(dir_ / "other-ca.pem", other_ca.certificate().to_pem());
  }
  auto r4 = run_process({FWDEPOT_DEVICE_AGENT, "--server",
                         "https://127.0.0.1:" + std::to_string(server_->device_port()), "--cert",
                         (dir_ / "dev-1.pem").string(), "--key", (dir_ / "dev-1.key").string(),
                         "--cacert", (dir_ / "other-ca.pem").string(), "--trusted-key",
                         (dir_ / "signing.pub").string(), "--model", "m1", "--state-dir",
                         state_dir().string(), "--once"});
  EXPECT_EQ(r4.exit_code, 1);
  EXPECT_TRUE(contains(r4.out, "TLS handshake")) << r4.out;
  EXPECT_TRUE(contains(r4.out, "certificate")) << r4.out;  // OpenSSL's verify reason
  EXPECT_TRUE(contains(metrics(), "unknown ca")) << metrics();

  // 5. This device's certificate revoked: the server refuses it in the handshake.
  write_crl(
      {{certs::Certificate::from_pem(read_file(dir_ / "dev-1.pem")).value().serial_hex(), now()}});
  auto r5 = agent(server_->device_port());
  EXPECT_EQ(r5.exit_code, 1);
  EXPECT_TRUE(contains(r5.out, "check-in failed")) << r5.out;
  EXPECT_TRUE(contains(metrics(), "reason=\"certificate revoked\"")) << metrics();
}

// The library itself, with its own handler: the download reuses the check-in's TLS session,
// and a pinned server key is enforced.
TEST_F(ClientTest, LibraryResumesTheTlsSessionAndEnforcesAPinnedKey) {
  start_server();
  const std::string payload = random_payload(64 * 1024);
  make_image("fw", "fw", "1.1.0", {"m1"}, payload);
  publish("fw");
  auto options = [&] {
    client::UpdaterOptions o;
    o.server_uri = "https://127.0.0.1:" + std::to_string(server_->device_port());
    o.model = "m1";
    o.trusted_keys = {signing_key_->public_key()};
    o.state_dir = state_dir();
    client::CertificateSecurity sec;
    sec.trusted_certs = {client::PemSource::from_buffer(read_file(dir_ / "ca.pem"))};
    sec.client_cert = client::PemSource::from_file(dir_ / "dev-1.pem");
    sec.client_key = client::PemSource::from_file(dir_ / "dev-1.key");
    o.security.credentials = sec;
    o.retry.attempts = 1;
    return o;
  };
  std::filesystem::create_directories(state_dir());

  // Pinned to some other key: refused, nothing downloaded.
  auto pinned = options();
  std::get<client::CertificateSecurity>(pinned.security.credentials).pinned_server_public_key =
      PrivateKey::generate(KeyType::ecdsa_p256).value().public_key().to_pem();
  client::FileUpdateHandler refused_handler(state_dir(), Version::parse("1.0.0").value());
  auto refusing = client::Updater::create(pinned, refused_handler).value();
  auto refused = refusing->run_once();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), client::error::server_key_mismatch);

  std::vector<std::pair<std::uint64_t, std::uint64_t>> progress;
  auto o = options();
  o.on_progress = [&](std::uint64_t done, std::uint64_t total) {
    progress.emplace_back(done, total);
  };
  client::FileUpdateHandler handler(state_dir(), Version::parse("1.0.0").value());
  auto updater = client::Updater::create(std::move(o), handler).value();
  auto report = updater->run_once();
  ASSERT_TRUE(report) << report.error();
  EXPECT_EQ(report->outcome, client::Outcome::updated);
  EXPECT_EQ(report->version, Version::parse("1.1.0").value());
  EXPECT_TRUE(report->tls_session_resumed);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().first, payload.size());
  EXPECT_EQ(progress.back().second, payload.size());
  EXPECT_EQ(read_file(handler.firmware_path()), payload);
}

// Every knob of the security configuration, each against the real server: the cycles that
// should connect do, and the ones that should not fail with the right error.
TEST_F(ClientTest, SecurityConfigurationVariants) {
  start_server();
  std::filesystem::create_directories(state_dir());
  auto base = [&] {
    client::CertificateSecurity c;
    c.trusted_certs = {client::PemSource::from_file(dir_ / "ca.pem")};
    c.client_cert = client::PemSource::from_file(dir_ / "dev-1.pem");
    c.client_key = client::PemSource::from_file(dir_ / "dev-1.key");
    client::SecurityConfig s;
    s.credentials = c;
    return s;
  };
  auto cycle = [&](const client::SecurityConfig& s) -> result<client::CycleReport> {
    client::UpdaterOptions o;
    o.server_uri = "https://127.0.0.1:" + std::to_string(server_->device_port());
    o.model = "m1";
    o.trusted_keys = {signing_key_->public_key()};
    o.state_dir = state_dir();
    o.security = s;
    o.retry.attempts = 1;
    client::FileUpdateHandler handler(state_dir(), Version::parse("1.0.0").value());
    auto updater = client::Updater::create(std::move(o), handler);
    if (!updater) {
      return updater.error();
    }
    return (*updater)->run_once();
  };
  auto certs_of = [](client::SecurityConfig& s) -> client::CertificateSecurity& {
    return std::get<client::CertificateSecurity>(s.credentials);
  };

  ASSERT_TRUE(cycle(base()));

  // Trust store from a hashed directory, as `openssl rehash` lays it out.
  std::filesystem::create_directories(dir_ / "trust");
  std::filesystem::copy_file(dir_ / "ca.pem", dir_ / "trust" / "ca.pem");
  ASSERT_EQ(run_process({"openssl", "rehash", (dir_ / "trust").string()}).exit_code, 0);
  auto from_dir = base();
  certs_of(from_dir).trusted_certs = {client::PemSource::from_directory(dir_ / "trust")};
  auto r = cycle(from_dir);
  EXPECT_TRUE(r) << r.error();

  // A password-protected key; and the wrong password.
  auto key = PrivateKey::generate(KeyType::ecdsa_p256).value();
  auto cert = ca_->issue_device(key.public_key(), "dev-1", "m1", now() - 60, 30).value();
  auto protected_key = base();
  certs_of(protected_key).client_cert = client::PemSource::from_buffer(cert.to_pem());
  certs_of(protected_key).client_key =
      client::PemSource::from_buffer(key.to_pem(std::string_view("s3cret")).value());
  certs_of(protected_key).client_key_password = "s3cret";
  r = cycle(protected_key);
  EXPECT_TRUE(r) << r.error();
  certs_of(protected_key).client_key_password = "wrong";
  r = cycle(protected_key);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), client::error::invalid_argument);
  EXPECT_EQ(r.error().message().find("s3cret"), std::string::npos);

  // TLS 1.2 only, with an explicit cipher; TLS 1.3 only.
  auto tls12 = base();
  tls12.max_version = client::TlsVersion::tls1_2;
  tls12.tls12_ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305";
  r = cycle(tls12);
  EXPECT_TRUE(r) << r.error();
  auto tls13 = base();
  tls13.min_version = client::TlsVersion::tls1_3;
  r = cycle(tls13);
  EXPECT_TRUE(r) << r.error();
  auto bad_cipher = base();
  bad_cipher.tls12_ciphers = "NOT-A-CIPHER";
  r = cycle(bad_cipher);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), client::error::invalid_argument);
  // A cipher without forward secrecy: the server offers none of those.
  auto static_rsa = base();
  static_rsa.max_version = client::TlsVersion::tls1_2;
  static_rsa.tls12_ciphers = "AES128-GCM-SHA256";
  r = cycle(static_rsa);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), client::error::tls_failed);

  // The name checked (and sent as SNI) can be overridden; a name the certificate lacks fails.
  auto by_name = base();
  by_name.server_name = "localhost";
  r = cycle(by_name);
  EXPECT_TRUE(r) << r.error();
  auto wrong_name = base();
  wrong_name.server_name = "fw.example.com";
  r = cycle(wrong_name);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), client::error::tls_failed);
  EXPECT_NE(r.error().message().find("hostname mismatch"), std::string::npos) << r.error();

  // A CRL from the CA that revokes the server's certificate.
  {
    auto server_cert = certs::Certificate::from_pem(options_.server_cert_pem).value();
    auto crl = ca_->make_crl(std::vector<certs::RevokedEntry>{{server_cert.serial_hex(), now()}},
                             99, now() - 60, 30)
                   .value();
    auto revoked = base();
    certs_of(revoked).crls = {client::PemSource::from_buffer(crl.to_pem())};
    r = cycle(revoked);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), client::error::tls_failed);
    EXPECT_NE(r.error().message().find("revoked"), std::string::npos) << r.error();
  }

  // PSK is for CoAPS: the HTTPS transport says so rather than trying.
  client::SecurityConfig psk;
  psk.credentials = client::PskSecurity{"dev-1", "0123456789abcdef"};
  r = cycle(psk);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), client::error::unsupported_protocol);
}

// The per-URI hook decides for downloads too: refusing the payload's URI fails the cycle with
// the hook's error, reported to the server, and nothing is stored.
TEST_F(ClientTest, ThePerUriSecurityHookCanRefuseADownload) {
  start_server();
  make_image("fw", "fw", "1.1.0", {"m1"}, random_payload(1000));
  publish("fw");
  std::filesystem::create_directories(state_dir());
  client::UpdaterOptions o;
  o.server_uri = "https://127.0.0.1:" + std::to_string(server_->device_port());
  o.model = "m1";
  o.trusted_keys = {signing_key_->public_key()};
  o.state_dir = state_dir();
  o.retry.attempts = 1;
  std::vector<std::string> asked;
  o.get_security_config = [&](std::string_view uri) -> result<client::SecurityConfig> {
    asked.emplace_back(uri);
    if (uri.find("/images/") != std::string_view::npos) {
      return Error(client::error::invalid_uri, "downloads only from the CDN");
    }
    client::CertificateSecurity c;
    c.trusted_certs = {client::PemSource::from_file(dir_ / "ca.pem")};
    c.client_cert = client::PemSource::from_file(dir_ / "dev-1.pem");
    c.client_key = client::PemSource::from_file(dir_ / "dev-1.key");
    client::SecurityConfig s;
    s.credentials = c;
    return s;
  };
  client::FileUpdateHandler handler(state_dir(), Version::parse("1.0.0").value());
  auto updater = client::Updater::create(std::move(o), handler).value();
  auto report = updater->run_once();
  ASSERT_TRUE(report) << report.error();
  EXPECT_EQ(report->outcome, client::Outcome::failed);
  EXPECT_EQ(*report->error, client::error::invalid_uri);
  EXPECT_TRUE(std::any_of(asked.begin(), asked.end(), [](const std::string& u) {
    return u.find("/api/v1/device/images/1") != std::string::npos;
  }));
  EXPECT_EQ(device_record().at("last_result"), "invalid_uri");
  EXPECT_FALSE(std::filesystem::exists(handler.firmware_path()));
}

}  // namespace
}  // namespace fwdepot::testing
