// SPDX-License-Identifier: Apache-2.0
#include "config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <set>

namespace fwdepot::cli {
namespace {

Error config_error(const std::filesystem::path& file, const std::string& what) {
  return Error(core::error::invalid_argument, file.string() + ": " + what);
}

}  // namespace

std::string default_config_toml() {
  return R"(# fwdepot configuration. Relative paths are relative to this file's directory.

[server]
device_listen = "0.0.0.0:8443"    # HTTPS for devices, client certificates required
admin_listen = "127.0.0.1:8444"   # HTTPS for admins (bearer tokens) and the web UI
coaps_listen = "0.0.0.0:5684"     # CoAP over DTLS for constrained devices
threads = 0                       # worker threads; 0 is one per core
log_level = "info"                # trace, debug, info, warn, error, critical or off

[tls]
ca = "pki/ca.pem"                 # device CA; devices must present a certificate it issued
ca_key = "pki/ca.key"             # used by `fwdepot certs`, never loaded by the server
cert = "pki/server.pem"
key = "pki/server.key"
crl = "pki/crl.pem"

[signing]
trusted_keys = ["keys/signing.pub"]  # release keys whose signatures count
threshold = 1                        # distinct trusted keys that must have signed an image

[storage]
database = "fwdepot.db"
blobs = "blobs"

[limits]
max_image_bytes = 1073741824      # largest accepted upload, in bytes
max_connections = 10000           # open connections per listener; more are closed at once
handshake_timeout_ms = 10000      # TLS handshake
header_timeout_ms = 10000         # a whole request head, however slowly it trickles in
body_timeout_ms = 30000           # longest pause while a request or response body moves
idle_timeout_ms = 60000           # keep-alive wait for the next request
shutdown_grace_ms = 10000         # SIGTERM lets in-flight requests finish this long
)";
}

result<Config> load_config(const std::filesystem::path& data_dir) {
  const std::filesystem::path file = data_dir / "fwdepot.toml";
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    return config_error(file,
                        "not found (run `fwdepot init --data " + data_dir.string() + "` first)");
  }
  // Debian's toml++ is built with exceptions; keep them inside this function.
  toml::table root;
  try {
    root = toml::parse_file(file.string());
  } catch (const toml::parse_error& err) {
    return config_error(file, "line " + std::to_string(err.source().begin.line) + ": " +
                                  std::string(err.description()));
  }
  Config c;
  c.data_dir = std::filesystem::absolute(data_dir, ec);
  auto resolve = [&](const std::string& p) { return c.data_dir / p; };

  const std::set<std::string> known = {"server.device_listen",
                                       "server.admin_listen",
                                       "server.coaps_listen",
                                       "server.threads",
                                       "server.log_level",
                                       "tls.ca",
                                       "tls.ca_key",
                                       "tls.cert",
                                       "tls.key",
                                       "tls.crl",
                                       "signing.trusted_keys",
                                       "signing.threshold",
                                       "storage.database",
                                       "storage.blobs",
                                       "limits.max_image_bytes",
                                       "limits.max_connections",
                                       "limits.handshake_timeout_ms",
                                       "limits.header_timeout_ms",
                                       "limits.body_timeout_ms",
                                       "limits.idle_timeout_ms",
                                       "limits.shutdown_grace_ms"};
  for (const auto& [section, node] : root) {
    const auto* table = node.as_table();
    if (table == nullptr) {
      return config_error(file, "'" + std::string(section.str()) + "' must be a [section]");
    }
    for (const auto& [key, value] : *table) {
      const std::string full = std::string(section.str()) + "." + std::string(key.str());
      if (!known.contains(full)) {
        return config_error(file, "unknown key '" + full + "'");
      }
    }
  }

  auto get_string = [&](std::string_view path, std::string& out) -> result<void> {
    const toml::node_view node = root.at_path(path);
    if (!node) {
      return {};
    }
    const auto* s = node.as_string();
    if (s == nullptr) {
      return config_error(file, "'" + std::string(path) + "' must be a string");
    }
    out = s->get();
    return {};
  };
  auto get_path = [&](std::string_view path, std::filesystem::path& out,
                      std::string fallback) -> result<void> {
    std::string text = std::move(fallback);
    if (auto r = get_string(path, text); !r) {
      return r;
    }
    out = resolve(text);
    return {};
  };
  auto get_int = [&](std::string_view path, std::int64_t& out, std::int64_t min,
                     std::int64_t max) -> result<void> {
    const toml::node_view node = root.at_path(path);
    if (!node) {
      return {};
    }
    const auto* i = node.as_integer();
    if (i == nullptr || i->get() < min || i->get() > max) {
      return config_error(file, "'" + std::string(path) + "' must be an integer from " +
                                    std::to_string(min) + " to " + std::to_string(max));
    }
    out = i->get();
    return {};
  };

  for (auto r : {get_string("server.device_listen", c.device_listen),
                 get_string("server.admin_listen", c.admin_listen),
                 get_string("server.coaps_listen", c.coaps_listen),
                 get_int("server.threads", c.threads, 0, 256),
                 get_string("server.log_level", c.log_level),
                 get_path("tls.ca", c.ca_cert, "pki/ca.pem"),
                 get_path("tls.ca_key", c.ca_key, "pki/ca.key"),
                 get_path("tls.cert", c.server_cert, "pki/server.pem"),
                 get_path("tls.key", c.server_key, "pki/server.key"),
                 get_path("tls.crl", c.crl, "pki/crl.pem"),
                 get_path("storage.database", c.database, "fwdepot.db"),
                 get_path("storage.blobs", c.blobs, "blobs"),
                 get_int("signing.threshold", c.threshold, 1, 16),
                 get_int("limits.max_image_bytes", c.max_image_bytes, 1, std::int64_t{1} << 53),
                 get_int("limits.max_connections", c.max_connections, 1, 1'000'000),
                 get_int("limits.handshake_timeout_ms", c.handshake_timeout_ms, 100, 600'000),
                 get_int("limits.header_timeout_ms", c.header_timeout_ms, 100, 600'000),
                 get_int("limits.body_timeout_ms", c.body_timeout_ms, 100, 3'600'000),
                 get_int("limits.idle_timeout_ms", c.idle_timeout_ms, 100, 3'600'000),
                 get_int("limits.shutdown_grace_ms", c.shutdown_grace_ms, 0, 3'600'000)}) {
    if (!r) {
      return r.error();
    }
  }

  const toml::node_view keys = root.at_path("signing.trusted_keys");
  if (!keys) {
    c.trusted_keys = {resolve("keys/signing.pub")};
  } else {
    const auto* array = keys.as_array();
    if (array == nullptr || array->empty()) {
      return config_error(file, "'signing.trusted_keys' must be a non-empty array of paths");
    }
    for (const auto& k : *array) {
      const auto* s = k.as_string();
      if (s == nullptr) {
        return config_error(file, "'signing.trusted_keys' entries must be strings");
      }
      c.trusted_keys.push_back(resolve(s->get()));
    }
  }
  constexpr std::array<std::string_view, 7> kLevels = {"trace", "debug",    "info", "warn",
                                                       "error", "critical", "off"};
  if (std::find(kLevels.begin(), kLevels.end(), c.log_level) == kLevels.end()) {
    return config_error(file,
                        "'server.log_level' must be one of trace, debug, info, warn, "
                        "error, critical, off");
  }
  if (static_cast<std::size_t>(c.threshold) > c.trusted_keys.size()) {
    return config_error(file, "'signing.threshold' is larger than the number of trusted keys");
  }
  return c;
}

}  // namespace fwdepot::cli
