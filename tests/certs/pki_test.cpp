// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/certs/pki.hpp"

#include <gtest/gtest.h>

#include <set>

namespace fwdepot::certs {
namespace {

constexpr std::int64_t kNow = 1'790'000'000;  // 2026-09-21, a fixed clock for every test
constexpr std::int64_t kDay = 86400;

CertificateAuthority make_ca(std::string_view name = "Test CA") {
  auto ca = CertificateAuthority::create(name, kNow - kDay, 3650);
  EXPECT_TRUE(ca) << ca.error().message();
  return std::move(*ca);
}

PublicKey fresh_key() {
  auto key = PrivateKey::generate(KeyType::ecdsa_p256);
  EXPECT_TRUE(key);
  return key->public_key();
}

Certificate device(const CertificateAuthority& ca, std::string_view id, int days = 365,
                   std::int64_t issued = kNow - kDay) {
  auto cert = ca.issue_device(fresh_key(), id, "board-a", issued, days);
  EXPECT_TRUE(cert) << cert.error().message();
  return *cert;
}

TEST(CertificateAuthority, RoundTripsThroughPem) {
  const CertificateAuthority ca = make_ca();
  auto key_pem = ca.key().to_pem();
  ASSERT_TRUE(key_pem);
  auto loaded = CertificateAuthority::from_pem(ca.certificate().to_pem(), *key_pem);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->certificate().serial_hex(), ca.certificate().serial_hex());
  EXPECT_EQ(loaded->certificate().subject_common_name(), "Test CA");
  // A certificate it issues verifies against the original.
  const Certificate cert = device(*loaded, "dev-1");
  EXPECT_TRUE(verify_device_certificate(cert, {}, ca.certificate(), nullptr, kNow));
}

TEST(CertificateAuthority, RejectsAKeyThatIsNotItsOwn) {
  const CertificateAuthority a = make_ca("A");
  const CertificateAuthority b = make_ca("B");
  auto result = CertificateAuthority::from_pem(a.certificate().to_pem(), *b.key().to_pem());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), error::key_mismatch);
}

TEST(CertificateAuthority, RefusesToActAsCaWithALeafCertificate) {
  const CertificateAuthority ca = make_ca();
  auto key = PrivateKey::generate(KeyType::ecdsa_p256);
  ASSERT_TRUE(key);
  auto leaf = ca.issue_device(key->public_key(), "dev", "", kNow, 10);
  ASSERT_TRUE(leaf);
  EXPECT_EQ(CertificateAuthority::from_pem(leaf->to_pem(), *key->to_pem()).error(),
            error::wrong_usage);
}

TEST(ServerCertificate, CarriesDnsAndIpNamesAndVerifiesForThem) {
  const CertificateAuthority ca = make_ca();
  const std::vector<std::string> dns = {"localhost", "fw.example.com"};
  const std::vector<std::string> ips = {"127.0.0.1", "::1"};
  auto cert = ca.issue_server(fresh_key(), dns, ips, kNow - kDay, 90);
  ASSERT_TRUE(cert) << cert.error().message();
  EXPECT_EQ(cert->dns_names(), dns);
  EXPECT_EQ(cert->ip_addresses(), ips);
  EXPECT_EQ(cert->subject_common_name(), "localhost");
  EXPECT_TRUE(verify_server_certificate(*cert, ca.certificate(), "fw.example.com", kNow));
  EXPECT_TRUE(verify_server_certificate(*cert, ca.certificate(), "127.0.0.1", kNow));
  EXPECT_EQ(verify_server_certificate(*cert, ca.certificate(), "evil.example.com", kNow).error(),
            error::invalid_name);
  EXPECT_EQ(verify_server_certificate(*cert, ca.certificate(), "10.0.0.1", kNow).error(),
            error::invalid_name);
}

TEST(ServerCertificate, RejectsBadNames) {
  const CertificateAuthority ca = make_ca();
  const std::vector<std::string> none;
  for (const std::vector<std::string>& dns :
       {std::vector<std::string>{"bad name"}, {"a,DNS:evil"}, {"-x.com"}, {""}}) {
    EXPECT_EQ(ca.issue_server(fresh_key(), dns, none, kNow, 1).error(), error::invalid_name)
        << dns[0];
  }
  const std::vector<std::string> bad_ip = {"300.1.1.1"};
  EXPECT_EQ(ca.issue_server(fresh_key(), none, bad_ip, kNow, 1).error(), error::invalid_name);
  EXPECT_EQ(ca.issue_server(fresh_key(), none, none, kNow, 1).error(), error::invalid_name);
}

TEST(DeviceCertificate, NamesTheDeviceAndItsModel) {
  const CertificateAuthority ca = make_ca();
  const Certificate cert = device(ca, "sensor-0042");
  EXPECT_EQ(cert.subject_common_name(), "sensor-0042");
  EXPECT_EQ(cert.subject_model(), "board-a");
  auto id = verify_device_certificate(cert, {}, ca.certificate(), nullptr, kNow);
  ASSERT_TRUE(id) << id.error().message();
  EXPECT_EQ(id->device_id, "sensor-0042");
  EXPECT_EQ(id->model, "board-a");
  EXPECT_EQ(id->serial_hex, cert.serial_hex());
}

TEST(DeviceCertificate, SerialsAreUniqueRandomAndPositive) {
  const CertificateAuthority ca = make_ca();
  std::set<std::string> serials;
  for (int i = 0; i < 50; ++i) {
    const std::string serial = device(ca, "d" + std::to_string(i)).serial_hex();
    EXPECT_GE(serial.size(), 30u) << serial;  // about 128 bits
    serials.insert(serial);
  }
  EXPECT_EQ(serials.size(), 50u);
}

TEST(DeviceCertificate, RejectsInvalidIds) {
  const CertificateAuthority ca = make_ca();
  for (const std::string& bad :
       std::vector<std::string>{"", "../x", "a/b", "a b", ".hidden", std::string(65, 'a')}) {
    EXPECT_EQ(ca.issue_device(fresh_key(), bad, "m", kNow, 1).error(), error::invalid_name) << bad;
  }
  EXPECT_EQ(ca.issue_device(fresh_key(), "ok", "bad model", kNow, 1).error(), error::invalid_name);
}

TEST(DeviceCertificate, FromAnotherCaIsUntrusted) {
  const CertificateAuthority ca = make_ca("Ours");
  const CertificateAuthority other = make_ca("Theirs");
  auto r = verify_device_certificate(device(other, "dev"), {}, ca.certificate(), nullptr, kNow);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), error::untrusted);
}

TEST(DeviceCertificate, ExpiredAndNotYetValidAreToldApart) {
  const CertificateAuthority ca = make_ca();
  const Certificate cert = device(ca, "dev", 30, kNow);
  EXPECT_TRUE(verify_device_certificate(cert, {}, ca.certificate(), nullptr, kNow + kDay));
  EXPECT_EQ(
      verify_device_certificate(cert, {}, ca.certificate(), nullptr, kNow + 31 * kDay).error(),
      error::expired);
  EXPECT_EQ(verify_device_certificate(cert, {}, ca.certificate(), nullptr, kNow - 60).error(),
            error::not_yet_valid);
}

TEST(DeviceCertificate, RevokedIsToldApartFromExpired) {
  const CertificateAuthority ca = make_ca();
  const Certificate revoked = device(ca, "stolen", 30, kNow);
  const Certificate fine = device(ca, "fine", 30, kNow);
  const std::vector<RevokedEntry> entries = {{revoked.serial_hex(), kNow}};
  auto crl = ca.make_crl(entries, 1, kNow, 365);
  ASSERT_TRUE(crl) << crl.error().message();
  EXPECT_TRUE(crl->is_revoked(revoked.serial_hex()));
  EXPECT_FALSE(crl->is_revoked(fine.serial_hex()));

  EXPECT_EQ(verify_device_certificate(revoked, {}, ca.certificate(), &*crl, kNow + kDay).error(),
            error::revoked);
  EXPECT_TRUE(verify_device_certificate(fine, {}, ca.certificate(), &*crl, kNow + kDay));
  // Expired and not revoked: expired.
  EXPECT_EQ(verify_device_certificate(fine, {}, ca.certificate(), &*crl, kNow + 40 * kDay).error(),
            error::expired);
  // Both revoked and expired: OpenSSL checks revocation before validity dates, so revoked wins;
  // either way the device is refused.
  EXPECT_EQ(
      verify_device_certificate(revoked, {}, ca.certificate(), &*crl, kNow + 40 * kDay).error(),
      error::revoked);
}

TEST(DeviceCertificate, StaleOrForeignCrlFailsClosed) {
  const CertificateAuthority ca = make_ca();
  const CertificateAuthority other = make_ca("Other");
  const Certificate cert = device(ca, "dev", 3650, kNow);
  auto crl = ca.make_crl({}, 1, kNow, 7);
  ASSERT_TRUE(crl);
  EXPECT_EQ(verify_device_certificate(cert, {}, ca.certificate(), &*crl, kNow + 8 * kDay).error(),
            error::crl_stale);
  auto foreign = other.make_crl({}, 1, kNow, 7);
  ASSERT_TRUE(foreign);
  EXPECT_EQ(verify_device_certificate(cert, {}, ca.certificate(), &*foreign, kNow + kDay).error(),
            error::invalid_crl);
}

TEST(DeviceCertificate, ServerCertificateIsTheWrongUsage) {
  const CertificateAuthority ca = make_ca();
  const std::vector<std::string> dns = {"dev"};
  auto server = ca.issue_server(fresh_key(), dns, {}, kNow, 10);
  ASSERT_TRUE(server);
  EXPECT_EQ(verify_device_certificate(*server, {}, ca.certificate(), nullptr, kNow + 1).error(),
            error::wrong_usage);
  // And the other way round.
  EXPECT_EQ(verify_server_certificate(device(ca, "dev"), ca.certificate(), {}, kNow).error(),
            error::wrong_usage);
}

TEST(Crl, IsResignedWithEveryRevocationAndAHigherNumber) {
  const CertificateAuthority ca = make_ca();
  const Certificate a = device(ca, "a");
  const Certificate b = device(ca, "b");
  std::vector<RevokedEntry> entries = {{a.serial_hex(), kNow}};
  auto first = ca.make_crl(entries, 1, kNow, 30);
  entries.push_back({b.serial_hex(), kNow + 10});
  auto second = ca.make_crl(entries, first->number() + 1, kNow + 10, 30);
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->revoked_count(), 1u);
  EXPECT_EQ(second->revoked_count(), 2u);
  EXPECT_TRUE(second->is_revoked(a.serial_hex()) && second->is_revoked(b.serial_hex()));
  EXPECT_GT(second->number(), first->number());
  EXPECT_EQ(second->this_update(), kNow + 10);
  EXPECT_EQ(second->next_update(), kNow + 10 + 30 * kDay);
  auto reloaded = Crl::from_pem(second->to_pem());
  ASSERT_TRUE(reloaded);
  EXPECT_EQ(reloaded->number(), second->number());
  EXPECT_TRUE(reloaded->is_revoked(b.serial_hex()));
  const std::vector<RevokedEntry> bad = {{"xyz", kNow}};
  EXPECT_EQ(ca.make_crl(bad, 3, kNow, 30).error(), error::invalid_name);
}

TEST(Pem, GarbageGetsAClearError) {
  EXPECT_EQ(Certificate::from_pem("hello").error(), error::invalid_certificate);
  EXPECT_EQ(Certificate::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .error(),
            error::invalid_certificate);
  EXPECT_EQ(Crl::from_pem("").error(), error::invalid_crl);
  const CertificateAuthority ca = make_ca();
  EXPECT_EQ(CertificateAuthority::from_pem(ca.certificate().to_pem(), "nope").error(),
            core::error::invalid_key);
}

TEST(Pem, ReadsWholeChains) {
  const CertificateAuthority ca = make_ca();
  const Certificate leaf = device(ca, "dev");
  auto chain = Certificate::chain_from_pem(leaf.to_pem() + ca.certificate().to_pem());
  ASSERT_TRUE(chain);
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_EQ((*chain)[1].serial_hex(), ca.certificate().serial_hex());
}

}  // namespace
}  // namespace fwdepot::certs
