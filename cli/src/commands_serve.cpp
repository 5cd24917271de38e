// SPDX-License-Identifier: Apache-2.0
// `fwdepot serve`: loads the data directory's configuration and runs the server.
#include "commands.hpp"
#include "config.hpp"
#include "file_io.hpp"
#include "fwdepot/server/server.hpp"
#include "logging.hpp"

#include <spdlog/spdlog.h>

#include <iostream>

namespace fwdepot::cli {
namespace {

result<server::ServerOptions> server_options(const Config& c) {
  server::ServerOptions o;
  o.device_listen = c.device_listen;
  o.admin_listen = c.admin_listen;
  o.coaps_listen = c.coaps_listen;
  o.threads = static_cast<unsigned>(c.threads);
  for (auto [path, out] :
       {std::pair{&c.ca_cert, &o.ca_pem}, std::pair{&c.server_cert, &o.server_cert_pem},
        std::pair{&c.server_key, &o.server_key_pem}}) {
    auto pem = read_small_file(*path);
    if (!pem) {
      return pem.error();
    }
    *out = std::move(*pem);
  }
  o.server_cert_path = c.server_cert;
  o.server_key_path = c.server_key;
  o.crl_path = c.crl;
  o.database = c.database;
  o.blobs = c.blobs;
  for (const auto& path : c.trusted_keys) {
    auto pem = read_small_file(path);
    if (!pem) {
      return pem.error();
    }
    auto key = PublicKey::from_pem(*pem);
    if (!key) {
      return Error(key.error().code, path.string() + ": " + key.error().message());
    }
    o.trusted_keys.push_back(std::move(*key));
  }
  o.threshold = static_cast<std::size_t>(c.threshold);
  o.max_image_bytes = static_cast<std::uint64_t>(c.max_image_bytes);
  o.max_connections = static_cast<std::size_t>(c.max_connections);
  o.handshake_timeout = std::chrono::milliseconds(c.handshake_timeout_ms);
  o.header_timeout = std::chrono::milliseconds(c.header_timeout_ms);
  o.body_timeout = std::chrono::milliseconds(c.body_timeout_ms);
  o.idle_timeout = std::chrono::milliseconds(c.idle_timeout_ms);
  o.shutdown_grace = std::chrono::milliseconds(c.shutdown_grace_ms);
  o.coaps_max_sessions = static_cast<std::size_t>(c.coaps_max_sessions);
  o.coaps_max_sessions_per_address = static_cast<std::size_t>(c.coaps_max_sessions_per_address);
  o.coaps_max_handshakes = static_cast<std::size_t>(c.coaps_max_handshakes);
  o.coaps_idle_timeout = std::chrono::milliseconds(c.coaps_idle_timeout_ms);
  o.ddi_tenant = c.ddi_tenant;
  o.ddi_polling_sleep = std::chrono::seconds(c.ddi_polling_sleep_s);
  return o;
}

}  // namespace

int run_serve(const ServeOptions& opts) {
  auto config = load_config(opts.data_dir, opts.flags);
  if (!config) {
    return fail(config.error().message());
  }
  const Config& c = *config;
  // --check-config prints the configuration on stdout; its log lines go to stderr.
  setup_logging(c.log_level, c.log_format, opts.check_config ? LogStream::err : LogStream::out);
  auto options = server_options(c);
  if (!options) {
    return fail(options.error().message());
  }
  if (opts.check_config) {
    if (auto r = server::check_options(*options); !r) {
      return fail(r.error().message());
    }
    std::cout << describe_config(c) << std::flush;
    return 0;
  }
  auto server = server::Server::create(std::move(*options));
  if (!server) {
    return fail(server.error().message());
  }
  (*server)->run();
  return 0;
}

}  // namespace fwdepot::cli
