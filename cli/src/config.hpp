// SPDX-License-Identifier: Apache-2.0
// fwdepot.toml: the data directory's configuration file, written by `fwdepot init`.
#pragma once

#include "fwdepot/core/error.hpp"

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fwdepot::cli {

/// Every field is set by load_config (defaults are in config.cpp's key table, the one place
/// that lists them). Every path is absolute once loaded.
struct Config {
  std::filesystem::path data_dir;
  // [server]
  std::string device_listen;
  std::string admin_listen;
  std::string coaps_listen;
  std::int64_t threads = 0;  // 0: one per core
  std::string log_level;     // trace, debug, info, warn, error, critical, off
  std::string log_format;    // text, json
  // [tls]
  std::filesystem::path ca_cert;  // device CA, also the issuer of the server certificate
  std::filesystem::path ca_key;   // only needed by `certs` commands, never by `serve`
  std::filesystem::path server_cert;
  std::filesystem::path server_key;
  std::filesystem::path crl;
  // [signing]
  std::vector<std::filesystem::path> trusted_keys;
  std::int64_t threshold = 1;
  // [storage]
  std::filesystem::path database;
  std::filesystem::path blobs;
  // [limits]
  std::int64_t max_image_bytes = 0;  // uploads above this are refused
  std::int64_t max_connections = 0;  // per listener
  std::int64_t handshake_timeout_ms = 0;
  std::int64_t header_timeout_ms = 0;  // the whole request head (slow-loris bound)
  std::int64_t body_timeout_ms = 0;    // longest pause while a body is read or written
  std::int64_t idle_timeout_ms = 0;    // keep-alive wait for the next request
  std::int64_t shutdown_grace_ms = 0;  // in-flight work allowed after SIGTERM
  std::int64_t coaps_max_sessions = 0;
  std::int64_t coaps_max_sessions_per_address = 0;
  std::int64_t coaps_max_handshakes = 0;
  std::int64_t coaps_idle_timeout_ms = 0;
  // [ddi]
  std::string ddi_tenant;  // empty: hawkBit DDI off
  std::int64_t ddi_polling_sleep_s = 0;

  std::map<std::string, std::string, std::less<>> sources;  // key → where its value came from
};

/// The file `fwdepot init` writes, with every option and a comment for each.
[[nodiscard]] std::string default_config_toml();

/// One configuration key, as documented in docs/configuration.md.
struct ConfigKey {
  std::string_view key;   // "limits.max_image_bytes"
  std::string_view flag;  // "max-image-bytes": `fwdepot serve --max-image-bytes`
  std::string_view help;
};
/// Every key, in the file's order.
[[nodiscard]] std::span<const ConfigKey> config_keys();
/// FWDEPOT_LIMITS_MAX_IMAGE_BYTES for limits.max_image_bytes.
[[nodiscard]] std::string config_env_name(std::string_view key);

/// Values given on the command line, by key. Lists (signing.trusted_keys) take one value per
/// occurrence; every other key takes one value.
using ConfigFlags = std::map<std::string, std::vector<std::string>, std::less<>>;

/// Loads the configuration: each key from its flag, else its FWDEPOT_* environment variable,
/// else DATA_DIR/fwdepot.toml, else its default. Relative paths are resolved against DATA_DIR
/// in the file and against the working directory in flags and the environment. Unknown keys
/// (in the file, or FWDEPOT_SERVER_*, _TLS_*, _SIGNING_*, _STORAGE_*, _LIMITS_* variables),
/// wrong types and out-of-range values are errors naming the key, so that a typo fails at start
/// instead of being silently ignored.
[[nodiscard]] result<Config> load_config(const std::filesystem::path& data_dir,
                                         const ConfigFlags& flags = {},
                                         char** environment = environ);

/// The effective configuration, one `key = value  # source` line per key (source: default,
/// file, env NAME or flag --NAME). Keys and certificates are named by path, never read out.
[[nodiscard]] std::string describe_config(const Config& c);

}  // namespace fwdepot::cli
