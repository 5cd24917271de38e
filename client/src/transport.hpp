// SPDX-License-Identifier: Apache-2.0
// How the update driver talks to a server, whatever the protocol: a check-in exchange and a
// resumable payload download, over HTTPS or CoAPS.
#pragma once

#include "fwdepot/client/security.hpp"
#include "fwdepot/core/error.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace fwdepot::client {

/// Receives a download as it arrives.
class DownloadSink {
 public:
  virtual ~DownloadSink() = default;
  /// The server answered: bytes follow from `offset` (0 when it sent the whole payload, which
  /// it does when the ranged request's validator no longer matched), of `total`, under `etag`.
  [[nodiscard]] virtual result<void> begin(std::uint64_t offset, std::uint64_t total,
                                           std::string_view etag) = 0;
  [[nodiscard]] virtual result<void> data(std::string_view bytes) = 0;
};

struct DownloadRequest {
  std::string url;
  std::uint64_t offset = 0;  // ask for bytes from here on (Range), when non-zero
  std::string if_range;      // the validator the stored bytes came under
};

struct TransportOptions {
  SecurityConfigProvider security;  // for every URI the transport connects to
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds io_timeout{30'000};
  std::size_t coap_block_size = 1024;                // CoAPS Block2 size asked for: 16 to 1024
  std::chrono::milliseconds coap_ack_timeout{2000};  // CoAPS retransmission timer (RFC 7252);
                                                     // libcoap 4.3.1 ignores less than 1 s
};

class Transport {
 public:
  virtual ~Transport() = default;
  /// POSTs a check-in to `url`; returns the answer's JSON body. Errors: error::refused (4xx,
  /// with the server's message), error::server_error (5xx), network and TLS errors.
  [[nodiscard]] virtual result<std::string> checkin(const std::string& url,
                                                    std::string_view json) = 0;
  /// Streams a payload into `sink`. Errors: error::image_changed (412, 416), error::refused,
  /// error::server_error, network errors (error::connection_failed when the connection drops
  /// before the last byte), and whatever the sink returns.
  [[nodiscard]] virtual result<void> download(const DownloadRequest& request,
                                              DownloadSink& sink) = 0;
  /// Whether the last exchange went without a full handshake: HTTPS resumed an earlier TLS
  /// session, CoAPS reused the DTLS session still open to the server.
  [[nodiscard]] virtual bool last_session_resumed() const = 0;
};

/// Errors: error::unsupported_protocol for a scheme other than https and coaps.
[[nodiscard]] result<std::unique_ptr<Transport>> make_transport(std::string_view scheme,
                                                                TransportOptions options);

/// The CoAPS transport (coaps_transport.cpp). libcoap 4.3.1 is not thread-safe: exchanges of
/// all CoAPS transports in a process are serialized, and nothing else in the process may use
/// libcoap at the same time.
[[nodiscard]] std::unique_ptr<Transport> make_coaps_transport(TransportOptions options);

}  // namespace fwdepot::client
