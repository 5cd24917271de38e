// SPDX-License-Identifier: Apache-2.0
// The smallest device program on fwdepot::client: one update cycle with the file handler.
// Usage: minimal SERVER_URL DEVICE_CERT DEVICE_KEY SERVER_CA RELEASE_PUB MODEL STATE_DIR
#include <fwdepot/client/file_handler.hpp>
#include <fwdepot/client/updater.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

namespace client = fwdepot::client;

int main(int argc, char** argv) {
  if (argc != 8) {
    std::cerr << "usage: " << argv[0]
              << " SERVER_URL DEVICE_CERT DEVICE_KEY SERVER_CA RELEASE_PUB MODEL STATE_DIR\n";
    return 2;
  }
  std::ifstream pub_file(argv[5]);
  std::stringstream pub;
  pub << pub_file.rdbuf();
  auto release_key = fwdepot::PublicKey::from_pem(pub.str());
  if (!release_key) {
    std::cerr << "release key: " << release_key.error() << "\n";
    return 2;
  }

  client::UpdaterOptions options;
  options.server_uri = argv[1];
  options.model = argv[6];
  options.trusted_keys = {*release_key};
  options.state_dir = argv[7];
  client::CertificateSecurity security;  // mutual TLS with the device's own certificate
  security.client_cert = client::PemSource::from_file(argv[2]);
  security.client_key = client::PemSource::from_file(argv[3]);
  security.trusted_certs = {client::PemSource::from_file(argv[4])};
  options.security.credentials = security;

  // Firmware goes to STATE_DIR/firmware.bin; the running version is STATE_DIR/version.
  client::FileUpdateHandler handler(argv[7], fwdepot::Version::parse("1.0.0").value());
  auto updater = client::Updater::create(std::move(options), handler);
  if (!updater) {
    std::cerr << updater.error() << "\n";
    return 2;
  }
  auto report = (*updater)->run_once();
  if (!report) {
    std::cerr << "check-in failed: " << report.error() << "\n";
    return 1;
  }
  switch (report->outcome) {
    case client::Outcome::no_update:
      std::cout << "up to date at " << report->version.to_string() << "\n";
      return 0;
    case client::Outcome::updated:
      std::cout << "updated to " << report->version.to_string() << "\n";
      return 0;
    case client::Outcome::upgrade_pending:
      std::cout << "installed; restart to run it\n";
      return 0;
    case client::Outcome::failed:
      std::cout << "refused (" << client::lwm2m_result(*report->error) << "): " << *report->error
                << "\n";
      return 1;
  }
  return 1;
}
