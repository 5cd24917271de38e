// SPDX-License-Identifier: Apache-2.0
#include "service/metrics.hpp"

namespace fwdepot::server {
namespace {

// Label values are escaped as the exposition format asks: backslash, quote and newline.
std::string escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

void Metrics::request(std::string_view listener, std::string_view route, int status) {
  std::lock_guard lock(mutex_);
  // Found without building the key's strings: a request is counted in a series that exists.
  auto it =
      requests_.find(std::tuple<std::string_view, std::string_view, int>(listener, route, status));
  if (it == requests_.end()) {
    it = requests_.emplace(std::tuple(std::string(listener), std::string(route), status), 0).first;
  }
  ++it->second;
}

void Metrics::handshake_failure(std::string_view listener, std::string_view reason) {
  std::lock_guard lock(mutex_);
  ++handshake_failures_[{std::string(listener), std::string(reason)}];
}

void Metrics::update_outcome(std::string_view result) {
  std::lock_guard lock(mutex_);
  ++outcomes_[std::string(result)];
}

std::string Metrics::render() const {
  std::string out;
  std::lock_guard lock(mutex_);
  out += "# HELP fwdepot_http_requests_total HTTP requests by listener, route and status.\n";
  out += "# TYPE fwdepot_http_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    const auto& [listener, route, status] = key;
    out += "fwdepot_http_requests_total{listener=\"" + escape(listener) + "\",route=\"" +
           escape(route) + "\",status=\"" + std::to_string(status) + "\"} " + std::to_string(n) +
           "\n";
  }
  out += "# HELP fwdepot_tls_handshake_failures_total Failed TLS handshakes by reason.\n";
  out += "# TYPE fwdepot_tls_handshake_failures_total counter\n";
  for (const auto& [key, n] : handshake_failures_) {
    out += "fwdepot_tls_handshake_failures_total{listener=\"" + escape(key.first) + "\",reason=\"" +
           escape(key.second) + "\"} " + std::to_string(n) + "\n";
  }
  out += "# HELP fwdepot_bytes_served_total Image payload bytes sent to devices.\n";
  out += "# TYPE fwdepot_bytes_served_total counter\n";
  out += "fwdepot_bytes_served_total " + std::to_string(bytes_served_.load()) + "\n";
  out += "# HELP fwdepot_downloads_total Payload downloads begun, whole or ranged (resumed).\n";
  out += "# TYPE fwdepot_downloads_total counter\n";
  out +=
      "fwdepot_downloads_total{range=\"false\"} " + std::to_string(full_downloads_.load()) + "\n";
  out +=
      "fwdepot_downloads_total{range=\"true\"} " + std::to_string(ranged_downloads_.load()) + "\n";
  out += "# HELP fwdepot_open_connections Connections open now, both listeners.\n";
  out += "# TYPE fwdepot_open_connections gauge\n";
  out += "fwdepot_open_connections " + std::to_string(open_connections_.load()) + "\n";
  out += "# HELP fwdepot_coaps_sessions Authenticated CoAPS (DTLS) sessions now.\n";
  out += "# TYPE fwdepot_coaps_sessions gauge\n";
  out += "fwdepot_coaps_sessions " + std::to_string(coaps_sessions_.load()) + "\n";
  out += "# HELP fwdepot_checkins_total Accepted device check-ins.\n";
  out += "# TYPE fwdepot_checkins_total counter\n";
  out += "fwdepot_checkins_total " + std::to_string(checkins_.load()) + "\n";
  out += "# HELP fwdepot_update_outcomes_total Update results reported by devices.\n";
  out += "# TYPE fwdepot_update_outcomes_total counter\n";
  for (const auto& [result, n] : outcomes_) {
    out += "fwdepot_update_outcomes_total{result=\"" + escape(result) + "\"} " + std::to_string(n) +
           "\n";
  }
  return out;
}

}  // namespace fwdepot::server
