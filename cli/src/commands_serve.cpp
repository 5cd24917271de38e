// SPDX-License-Identifier: Apache-2.0
// `fwdepot serve`: loads the data directory's configuration and runs the server.
#include "commands.hpp"
#include "config.hpp"
#include "file_io.hpp"
#include "fwdepot/server/server.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>

namespace fwdepot::cli {
namespace {

// One line per event, key=value after the level, timestamps in UTC: easy to grep and to feed
// to a log pipeline. Logs go to stderr; stdout stays free for the program's output.
void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("fwdepot");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
}

result<server::ServerOptions> server_options(const Config& c) {
  server::ServerOptions o;
  o.device_listen = c.device_listen;
  o.admin_listen = c.admin_listen;
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
  return o;
}

}  // namespace

int run_serve(const ServeOptions& opts) {
  auto config = load_config(opts.data_dir, opts.flags);
  if (!config) {
    return fail(config.error().message());
  }
  const Config& c = *config;
  setup_logging(c.log_level);  // stderr: stdout stays for --check-config's output
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
  spdlog::warn("coaps_disabled listen={} reason=\"CoAPS is not part of this build yet\"",
               c.coaps_listen);
  (*server)->run();
  return 0;
}

}  // namespace fwdepot::cli
