// SPDX-License-Identifier: Apache-2.0
// The CoAP-over-DTLS device listener: libcoap 4.3.1 driven by the server's Asio event loop.
// libcoap is not thread-safe, so one strand owns the CoAP context; its single epoll descriptor
// (which also carries libcoap's retransmission and expiry timers) is awaited with Asio, and each
// wake-up runs libcoap's processing without blocking.
#pragma once

#include "fwdepot/core/error.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace fwdepot::server {

class Backend;
class DeviceService;
class ServerTls;
class Metrics;
struct TlsMaterial;

struct CoapsLimits {
  std::size_t max_sessions = 10'000;           // established DTLS sessions, in total
  std::size_t max_sessions_per_address = 256;  // established sessions from one IP address
  std::chrono::seconds idle_timeout{120};      // an idle session is dropped after this
  std::size_t max_handshakes = 1000;           // half-open handshakes (source addresses)
};

class CoapsListener {
 public:
  /// Binds `listen` (ADDR:PORT, port 0 picks one). Devices authenticate with certificates from
  /// the device CA, checked against the same CRL as HTTPS (ServerTls's current device store), or
  /// with a pre-shared key provisioned in the catalog, looked up per handshake.
  [[nodiscard]] static result<std::unique_ptr<CoapsListener>> create(
      boost::asio::io_context& io, std::string_view listen, const TlsMaterial& material,
      CoapsLimits limits, ServerTls& tls, DeviceService& devices, Backend& backend,
      Metrics& metrics);
  ~CoapsListener();

  [[nodiscard]] std::uint16_t port() const;
  /// "ADDR:PORT" as bound.
  [[nodiscard]] std::string address() const;
  /// The HTTPS device port, for the download URLs of offers made over CoAPS.
  void set_https_port(std::uint16_t port);

  /// Starts serving on the io_context that `threads` threads run. Call once, before it runs.
  void start(unsigned threads);
  /// Stops serving; thread-safe, returns at once.
  void stop();

  struct Impl;  // public for libcoap's C callbacks; defined in listener.cpp only

 private:
  explicit CoapsListener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fwdepot::server
