// SPDX-License-Identifier: Apache-2.0
// `fwdepot serve`: the HTTPS device and admin listeners over one Asio io_context.
// No Asio or Beast type appears here, so including this header costs nothing.
#pragma once

#include "fwdepot/core/error.hpp"
#include "fwdepot/core/keys.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace fwdepot::server {

struct ServerOptions {
  std::string device_listen = "0.0.0.0:8443";  // ADDR:PORT; port 0 picks a free one
  std::string admin_listen = "127.0.0.1:8444";
  std::string coaps_listen;  // ADDR:PORT for CoAP over DTLS; empty: not served
  unsigned threads = 0;      // 0: one per core

  std::string ca_pem;           // device CA: the trust anchor for client certificates
  std::string server_cert_pem;  // server certificate (chain), used by both listeners
  std::string server_key_pem;
  // Where the two came from. When set, SIGHUP reads them again: a renewed certificate is in
  // force for the next handshake on every listener, without a restart.
  std::filesystem::path server_cert_path;
  std::filesystem::path server_key_path;
  std::filesystem::path crl_path;  // re-read when it changes and on SIGHUP

  std::filesystem::path database;
  std::filesystem::path blobs;
  std::vector<PublicKey> trusted_keys;  // release keys; uploads need `threshold` of them
  std::size_t threshold = 1;
  std::uint64_t max_image_bytes = std::uint64_t{1} << 30;

  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds header_timeout{10'000};       // whole request head: slow-loris bound
  std::chrono::milliseconds body_timeout{30'000};         // between body reads and writes
  std::chrono::milliseconds idle_timeout{60'000};         // keep-alive wait for the next request
  std::chrono::milliseconds shutdown_grace{10'000};       // in-flight work allowed after SIGTERM
  std::size_t max_connections = 10'000;                   // per listener; more are closed at once
  std::size_t coaps_max_sessions = 10'000;                // authenticated DTLS sessions in total
  std::size_t coaps_max_sessions_per_address = 256;       // ... from one IP address
  std::chrono::milliseconds coaps_idle_timeout{120'000};  // an idle DTLS session is dropped
  std::size_t coaps_max_handshakes = 1000;                // half-open DTLS handshakes

  // hawkBit DDI on the device listener, under /{ddi_tenant}/controller/v1/{controllerId}.
  std::string ddi_tenant = "DEFAULT";           // empty: DDI not served
  std::chrono::seconds ddi_polling_sleep{300};  // the polling interval DDI agents are told
};

/// Everything Server::create checks before it opens storage and binds: the listen addresses,
/// the threshold, the certificates, key and CRL (the same code builds the TLS contexts). For
/// `fwdepot serve --check-config`; touches no storage and no network.
[[nodiscard]] result<void> check_options(const ServerOptions& options);

class Server {
 public:
  /// Loads the TLS material and CRL, opens (and recovers) storage, binds both listeners.
  /// Errors: bad certificates or keys, a CRL that does not parse, storage errors, and
  /// addresses that cannot be bound, each with a message that names the culprit.
  [[nodiscard]] static result<std::unique_ptr<Server>> create(ServerOptions options);
  ~Server();

  [[nodiscard]] std::uint16_t device_port() const;
  [[nodiscard]] std::uint16_t admin_port() const;
  /// 0 when CoAPS is not served.
  [[nodiscard]] std::uint16_t coaps_port() const;

  /// Serves until SIGTERM or SIGINT (graceful: stop accepting, let in-flight requests finish
  /// within shutdown_grace) or stop(). SIGHUP reloads the CRL.
  void run();
  /// Thread-safe; returns at once.
  void stop();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fwdepot::server
