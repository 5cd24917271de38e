// SPDX-License-Identifier: Apache-2.0
// The server's two HTTPS listeners.
#pragma once

namespace fwdepot::server {

/// Devices (mutual TLS, the device API and DDI) or administrators (bearer tokens, the admin
/// API and the web UI).
enum class Listener { device, admin };

/// The name logs and metrics give the listener.
constexpr const char* listener_name(Listener l) {
  return l == Listener::device ? "device" : "admin";
}

}  // namespace fwdepot::server
