// SPDX-License-Identifier: Apache-2.0
// fwdepot.toml: the data directory's configuration file, written by `fwdepot init`.
#pragma once

#include "fwdepot/core/error.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace fwdepot::cli {

/// Every path is absolute once loaded: relative paths in the file are resolved against the
/// data directory, so the directory can be moved as a whole.
struct Config {
  std::filesystem::path data_dir;
  // [server]
  std::string device_listen = "0.0.0.0:8443";
  std::string admin_listen = "127.0.0.1:8444";
  std::string coaps_listen = "0.0.0.0:5684";
  std::int64_t threads = 0;        // 0: one per core
  std::string log_level = "info";  // trace, debug, info, warn, error, critical, off
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
  std::int64_t max_image_bytes = std::int64_t{1} << 30;  // uploads above this are refused
  std::int64_t max_connections = 10'000;                 // per listener
  std::int64_t handshake_timeout_ms = 10'000;
  std::int64_t header_timeout_ms = 10'000;  // the whole request head (slow-loris bound)
  std::int64_t body_timeout_ms = 30'000;    // longest pause while a body is read or written
  std::int64_t idle_timeout_ms = 60'000;    // keep-alive wait for the next request
  std::int64_t shutdown_grace_ms = 10'000;  // in-flight work allowed after SIGTERM
};

/// The file `fwdepot init` writes, with every option and a comment for each.
[[nodiscard]] std::string default_config_toml();

/// Loads DATA_DIR/fwdepot.toml. Unknown keys, wrong types and out-of-range values are errors
/// naming the key, so that a typo fails at start instead of being silently ignored.
[[nodiscard]] result<Config> load_config(const std::filesystem::path& data_dir);

}  // namespace fwdepot::cli
