// SPDX-License-Identifier: Apache-2.0
// Counters for /metrics, in the Prometheus text exposition format. Labels come from fixed sets
// (route patterns, status codes, OpenSSL reason strings, LwM2M results), so cardinality stays
// bounded whatever clients send.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace fwdepot::server {

class Metrics {
 public:
  void request(std::string_view listener, std::string_view route, int status);
  void handshake_failure(std::string_view listener, std::string_view reason);
  void bytes_served(std::uint64_t n) { bytes_served_ += n; }
  /// A payload download begins: the whole payload, or a range (a resumption).
  void download_started(bool ranged) { ++(ranged ? ranged_downloads_ : full_downloads_); }
  void connection_opened() { ++open_connections_; }
  void connection_closed() { --open_connections_; }
  void checkin() { ++checkins_; }
  /// Authenticated CoAPS (DTLS) sessions now.
  void coaps_sessions(std::int64_t n) { coaps_sessions_ = n; }
  void update_outcome(std::string_view result);

  [[nodiscard]] std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t, std::less<>> requests_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> handshake_failures_;
  std::map<std::string, std::uint64_t> outcomes_;
  std::atomic<std::uint64_t> bytes_served_{0};
  std::atomic<std::uint64_t> full_downloads_{0};
  std::atomic<std::uint64_t> ranged_downloads_{0};
  std::atomic<std::int64_t> open_connections_{0};
  std::atomic<std::uint64_t> checkins_{0};
  std::atomic<std::int64_t> coaps_sessions_{0};
};

}  // namespace fwdepot::server
