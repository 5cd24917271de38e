// SPDX-License-Identifier: Apache-2.0
// fwdepot-device: the reference update agent, on the client library and its file handler.
#include "fwdepot/client/file_handler.hpp"
#include "fwdepot/client/updater.hpp"
#include "fwdepot/core/encoding.hpp"

#include <CLI/CLI.hpp>

#include <cctype>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace {

using namespace fwdepot;

int fail(const std::string& message, int code = 1) {
  std::cerr << "fwdepot-device: error: " << message << "\n";
  return code;
}

result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error(client::error::invalid_argument, "cannot read " + path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string describe(const client::CycleReport& r) {
  switch (r.outcome) {
    case client::Outcome::no_update:
      return "no update, running " + r.version.to_string();
    case client::Outcome::updated:
      return "updated to " + r.version.to_string();
    case client::Outcome::upgrade_pending:
      return "installed, pending a restart";
    case client::Outcome::failed:
      return "update failed (" + std::string(client::lwm2m_result(*r.error)) +
             "): " + r.error->message();
  }
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fwdepot-device: reference firmware update agent"};
  std::string server, cert, key, cacert, model, initial_version = "0.0.0", transport;
  std::string psk_identity, psk_key_hex, psk_key_file;
  std::size_t block_size = 1024;
  unsigned ack_timeout_ms = 2000;
  std::vector<std::string> trusted_key_files;
  std::size_t threshold = 1;
  std::string state_dir;
  bool once = false;
  bool allow_downgrade = false;
  unsigned poll_seconds = 3600;
  app.add_option("--server", server,
                 "Device API base URL: https://fw.example:8443 or coaps://fw.example:5684")
      ->required();
  auto* cert_opt = app.add_option("--cert", cert, "Device certificate (PEM)");
  auto* key_opt = app.add_option("--key", key, "Device private key (PEM)");
  auto* ca_opt = app.add_option("--cacert", cacert, "CA that issued the server certificate (PEM)");
  auto* identity_opt =
      app.add_option("--psk-identity", psk_identity, "CoAPS pre-shared key identity");
  auto* psk_opt = app.add_option("--psk-key", psk_key_hex, "CoAPS pre-shared key, hex");
  auto* psk_file_opt =
      app.add_option("--psk-key-file", psk_key_file, "File holding the pre-shared key, hex");
  psk_opt->excludes(psk_file_opt);
  for (auto* o : {cert_opt, key_opt, ca_opt}) {
    o->excludes(identity_opt);
  }
  app.add_option("--trusted-key", trusted_key_files, "Release public key (repeatable)")
      ->required()
      ->allow_extra_args(false);
  app.add_option("--threshold", threshold, "Distinct trusted keys that must have signed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--model", model, "This device's model")->required();
  app.add_option("--state-dir", state_dir, "Where firmware and state are kept")->required();
  app.add_option("--initial-version", initial_version, "Version when DIR has none")
      ->capture_default_str();
  app.add_flag("--once", once, "One cycle; exit 0 on success or no update");
  app.add_flag("--allow-downgrade", allow_downgrade, "Accept downgrades the server allows");
  app.add_option("--poll-interval", poll_seconds, "Seconds between cycles without --once")
      ->capture_default_str()
      ->check(CLI::Range(1u, 86400u * 7));
  app.add_option("--transport", transport, "https or coaps; must agree with --server")
      ->check(CLI::IsMember({"https", "coaps"}));
  app.add_option("--block-size", block_size, "CoAPS Block2 size")
      ->capture_default_str()
      ->check(CLI::IsMember({16, 32, 64, 128, 256, 512, 1024}));
  app.add_option("--coap-ack-timeout-ms", ack_timeout_ms, "CoAPS first retransmission timer")
      ->capture_default_str()
      ->check(CLI::Range(1000u, 60'000u));  // libcoap 4.3.1 takes no less than 1 s
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      return app.exit(e);
    }
    return fail(e.what(), 2);
  }
  const std::string scheme = server.substr(0, server.find(':'));
  if (scheme != "https" && scheme != "coaps") {
    return fail("--server: an https:// or coaps:// URL", 2);
  }
  if (!transport.empty() && transport != scheme) {
    return fail("--transport " + transport + " with a " + scheme + " server URL", 2);
  }
  const bool psk = !psk_identity.empty();
  if (psk && scheme != "coaps") {
    return fail("pre-shared keys are for CoAPS", 2);
  }
  if (psk != (!psk_key_hex.empty() || !psk_key_file.empty())) {
    return fail("--psk-identity goes with --psk-key or --psk-key-file", 2);
  }
  if (!psk && (cert.empty() || key.empty() || cacert.empty())) {
    return fail("--cert, --key and --cacert are needed (or, over CoAPS, a pre-shared key)", 2);
  }
  auto initial = Version::parse(initial_version);
  if (!initial) {
    return fail("--initial-version: " + initial.error().message(), 2);
  }

  client::UpdaterOptions options;
  options.server_uri = server;
  options.model = model;
  options.threshold = threshold;
  options.allow_downgrade = allow_downgrade;
  options.state_dir = state_dir;
  for (const auto& path : trusted_key_files) {
    auto pem = read_file(path);
    if (!pem) {
      return fail(pem.error().message(), 2);
    }
    auto k = PublicKey::from_pem(*pem);
    if (!k) {
      return fail(path + ": " + k.error().message(), 2);
    }
    options.trusted_keys.push_back(std::move(*k));
  }
  options.coaps_block_size = block_size;
  options.coaps_ack_timeout = std::chrono::milliseconds(ack_timeout_ms);
  if (psk) {
    if (!psk_key_file.empty()) {
      auto text = read_file(psk_key_file);
      if (!text) {
        return fail(text.error().message(), 2);
      }
      psk_key_hex = *text;
      while (!psk_key_hex.empty() && std::isspace(static_cast<unsigned char>(psk_key_hex.back()))) {
        psk_key_hex.pop_back();
      }
    }
    auto key_bytes = hex_decode(psk_key_hex);
    if (!key_bytes || key_bytes->empty()) {
      return fail("the pre-shared key is not hex", 2);
    }
    options.security.credentials = client::PskSecurity{psk_identity, std::move(*key_bytes)};
  } else {
    client::CertificateSecurity security;
    security.trusted_certs = {client::PemSource::from_file(cacert)};
    security.client_cert = client::PemSource::from_file(cert);
    security.client_key = client::PemSource::from_file(key);
    options.security.credentials = std::move(security);
  }
  options.on_progress = [last = std::uint64_t{0}](std::uint64_t done, std::uint64_t total) mutable {
    if (done == total || done - last >= total / 10) {
      std::cout << "downloaded " << done << " of " << total << " bytes" << std::endl;
      last = done;
    }
  };

  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  // Durable every 64 KiB: a restart resumes at most that far back.
  client::FileUpdateHandler handler(state_dir, *initial, 64 * 1024);
  auto updater = client::Updater::create(std::move(options), handler);
  if (!updater) {
    return fail(updater.error().message(), 2);
  }
  while (true) {
    auto report = (*updater)->run_once();
    if (!report) {
      std::cout << "check-in failed: " << report.error().message() << std::endl;
    } else {
      if (report->resumed_from > 0) {
        std::cout << "resumed at byte " << report->resumed_from << std::endl;
      }
      std::cout << describe(*report) << std::endl;
    }
    if (once) {
      return report && report->outcome != client::Outcome::failed ? 0 : 1;
    }
    std::this_thread::sleep_for(std::chrono::seconds(poll_seconds));
  }
}
