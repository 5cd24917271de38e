// SPDX-License-Identifier: Apache-2.0
// fwdepot-device: the reference update agent, on the client library and its file handler.
#include "fwdepot/client/file_handler.hpp"
#include "fwdepot/client/updater.hpp"

#include <CLI/CLI.hpp>

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
  std::string server, cert, key, cacert, model, initial_version = "0.0.0", transport = "https";
  std::vector<std::string> trusted_key_files;
  std::size_t threshold = 1;
  std::string state_dir;
  bool once = false;
  bool allow_downgrade = false;
  unsigned poll_seconds = 3600;
  app.add_option("--server", server, "Device API base URL, e.g. https://fw.example:8443")
      ->required();
  app.add_option("--cert", cert, "Device certificate (PEM)")->required();
  app.add_option("--key", key, "Device private key (PEM)")->required();
  app.add_option("--cacert", cacert, "CA that issued the server certificate (PEM)")->required();
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
  app.add_option("--transport", transport, "https or coaps")
      ->check(CLI::IsMember({"https", "coaps"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      return app.exit(e);
    }
    return fail(e.what(), 2);
  }
  if (transport != "https") {
    return fail("the coaps transport is not part of this build yet", 2);
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
  client::CertificateSecurity security;
  security.trusted_certs = {client::PemSource::from_file(cacert)};
  security.client_cert = client::PemSource::from_file(cert);
  security.client_key = client::PemSource::from_file(key);
  options.security.credentials = std::move(security);
  options.on_progress = [last = std::uint64_t{0}](std::uint64_t done, std::uint64_t total) mutable {
    if (done == total || done - last >= total / 10) {
      std::cout << "downloaded " << done << " of " << total << " bytes" << std::endl;
      last = done;
    }
  };

  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  client::FileUpdateHandler handler(state_dir, *initial);
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
