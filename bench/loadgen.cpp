// SPDX-License-Identifier: Apache-2.0
// fwdepot-loadgen: a fleet of simulated devices against an HTTPS server on loopback, each device
// with its own certificate, minted at start from the device CA with fwdepot's PKI code. The same
// client measures fwdepot and its peers (bench/compare), so only the server differs.
//
// Scenarios (one per run):
//   full      new connection, full mutual-TLS handshake, one GET of --path, close
//   resumed   the same with the device's last TLS session (1.3 ticket or 1.2 ticket): a full
//             handshake that should have been resumed counts as an error
//   keepalive one keep-alive connection per device; --requests requests in all (a POST of
//             --body when given, as a check-in is, else a GET of --path)
//   download  one keep-alive connection per device, each GETs --path --repeat times; every
//             byte goes through SHA-256 and must match --sha256 and --size
//   idle      --devices connections opened (handshake and one request each) and held, then the
//             server's RSS is read: the memory that idle mutual-TLS connections cost it
//
// It prints one line of key=value figures. Every run is bounded by --max-seconds; a run that
// ends with an error or at the bound exits 1 with the first error's text.
#include "fwdepot/certs/pki.hpp"
#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/keys.hpp"
#include "fwdepot/core/openssl.hpp"

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace fwdepot::bench {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using SslStream = ssl::stream<tcp::socket>;
constexpr std::size_t kSmallChunk = 4096;        // answers of a few bytes
constexpr std::size_t kLargeChunk = 256 * 1024;  // downloads

struct Options {
  std::string host = "127.0.0.1";
  unsigned short port = 0;
  std::string ca;
  std::string ca_key;
  std::string model = "bench";
  std::string scenario;
  int devices = 1;
  int concurrency = 0;  // 0: one per device
  int connections = 0;  // full/resumed: connections in all (0: one per device)
  int requests = 0;     // keepalive: requests in all
  int repeat = 1;       // download: downloads per device
  std::string path = "/";
  std::string body;  // keepalive: POSTed as application/json when set
  unsigned expect_status = 200;
  std::string sha256;
  std::uint64_t size = 0;
  std::string tls = "1.3";
  int server_pid = 0;
  double max_seconds = 120;
};

struct Device {
  certs::Certificate cert;
  PrivateKey key;
  std::shared_ptr<SSL_SESSION> session;  // the newest one the server gave it
};

struct ProcSample {
  double cpu_seconds = 0;
  long rss_kib = 0;
  long hwm_kib = 0;
};

// The server's CPU time (user + system) and resident memory, from /proc: nothing to sample
// (zeros) without --server-pid. A process that cannot be read is an error, never a zero figure.
result<ProcSample> sample_server(int pid) {
  ProcSample s;
  if (pid <= 0) {
    return s;
  }
  const Error unreadable(core::error::invalid_argument,
                         "cannot read /proc/" + std::to_string(pid) + " (--server-pid)");
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // Fields after the command's closing parenthesis; utime and stime are fields 14 and 15.
  const auto close = text.rfind(')');
  if (close == std::string::npos) {
    return unreadable;
  }
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  unsigned long utime = 0, stime = 0;
  int i = 3;
  for (; i <= 15 && fields >> field; ++i) {
    if (i == 14) {
      utime = std::stoul(field);
    }
    if (i == 15) {
      stime = std::stoul(field);
    }
  }
  if (i != 16) {
    return unreadable;
  }
  s.cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      s.rss_kib = std::stol(line.substr(6));
    }
    if (line.rfind("VmHWM:", 0) == 0) {
      s.hwm_kib = std::stol(line.substr(6));
    }
  }
  if (s.rss_kib == 0) {
    return unreadable;
  }
  return s;
}

class Run {
 public:
  Run(Options o, std::vector<Device> devices)
      : o_(std::move(o)), devices_(std::move(devices)), tls_(ssl::context::tls_client) {}

  result<void> setup_tls() {
    SSL_CTX* native = tls_.native_handle();
    const int version = o_.tls == "1.2" ? TLS1_2_VERSION : TLS1_3_VERSION;
    SSL_CTX_set_min_proto_version(native, version);
    SSL_CTX_set_max_proto_version(native, version);
    // Sessions are kept per device by hand (SSL_get1_session), not in OpenSSL's client cache.
    SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
    boost::system::error_code ec;
    tls_.load_verify_file(o_.ca, ec);
    if (ec) {
      return Error(certs::error::invalid_certificate, "--ca: " + ec.message());
    }
    tls_.set_verify_mode(ssl::verify_peer);
    tls_.set_verify_callback(ssl::host_name_verification(o_.host));
    return {};
  }

  // One connection of `device`: TCP, the handshake (resuming its session when asked), and its
  // certificate and key in the SSL object.
  asio::awaitable<std::unique_ptr<SslStream>> connect(Device& device, bool resume) {
    auto stream = std::make_unique<SslStream>(io_, tls_);
    SSL* ssl = stream->native_handle();
    if (SSL_use_certificate(ssl, device.cert.get()) != 1 ||
        SSL_use_PrivateKey(ssl, device.key.get()) != 1) {
      throw std::runtime_error("device certificate: " + openssl::drain_errors());
    }
    SSL_set_quiet_shutdown(ssl, 1);  // the connection ends with a close, not a close_notify wait
    if (resume && device.session) {
      SSL_set_session(ssl, device.session.get());
    }
    co_await stream->next_layer().async_connect(endpoint_, asio::use_awaitable);
    stream->next_layer().set_option(tcp::no_delay(true));
    co_await stream->async_handshake(ssl::stream_base::client, asio::use_awaitable);
    if (resume && SSL_session_reused(ssl) != 1) {
      throw std::runtime_error("the server did not resume the device's session");
    }
    co_return stream;
  }

  // Keeps the connection's session for the device's next one and ends the connection. After a
  // response the TLS 1.3 tickets have arrived; a 1.2 session exists after the handshake. The
  // quiet SSL_shutdown sends nothing, but marks the end as orderly: OpenSSL makes the session
  // of an SSL freed without it unresumable.
  static void keep_session(Device& device, SslStream& stream) {
    SSL* ssl = stream.native_handle();
    if (SSL_SESSION* s = SSL_get1_session(ssl)) {
      device.session.reset(s, SSL_SESSION_free);
    }
    SSL_shutdown(ssl);
  }

  // One request and its answer, the body read into `chunk` piece by piece and dropped (or
  // hashed: `hash` set). Each coroutine has its own chunk: a read completes into it before the
  // coroutine resumes to look at it.
  asio::awaitable<std::uint64_t> exchange(SslStream& stream, beast::flat_buffer& buffer,
                                          std::vector<char>& chunk, http::verb verb,
                                          const std::string& body, bool close, EVP_MD_CTX* hash) {
    http::request<http::string_body> req{verb, o_.path, 11};
    req.set(http::field::host, o_.host);
    req.set(http::field::user_agent, "fwdepot-loadgen");
    if (verb == http::verb::post) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.keep_alive(!close);
    req.prepare_payload();
    co_await http::async_write(stream, req, asio::use_awaitable);

    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    co_await http::async_read_header(stream, buffer, parser, asio::use_awaitable);
    if (parser.get().result_int() != o_.expect_status) {
      throw std::runtime_error("status " + std::to_string(parser.get().result_int()) +
                               ", expected " + std::to_string(o_.expect_status));
    }
    std::uint64_t bytes = 0;
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      boost::system::error_code ec;
      co_await http::async_read(stream, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec && ec != http::error::need_buffer) {
        throw boost::system::system_error(ec);
      }
      const std::size_t got = chunk.size() - parser.get().body().size;
      if (hash != nullptr) {
        EVP_DigestUpdate(hash, chunk.data(), got);
      }
      bytes += got;
    }
    co_return bytes;
  }

  void fail(const std::string& what) {
    if (errors_++ == 0) {
      first_error_ = what;
    }
  }

  // A connection for one request: the handshake, a GET of --path, the session kept, the close.
  asio::awaitable<void> one_shot(Device& device, bool resume, std::vector<char>& chunk) {
    auto stream = co_await connect(device, resume);
    beast::flat_buffer buffer;
    co_await exchange(*stream, buffer, chunk, http::verb::get, {}, true, nullptr);
    keep_session(device, *stream);
  }

  // Scenario bodies. Each worker catches its own errors: one failed device does not stop others.
  asio::awaitable<void> handshakes(int worker, int workers, bool resume) {
    const int total = o_.connections > 0 ? o_.connections : o_.devices;
    std::vector<char> chunk(kSmallChunk);
    for (int i = worker; i < total; i += workers) {
      Device& device = devices_[static_cast<std::size_t>(i % o_.devices)];
      try {
        const auto start = Clock::now();
        co_await one_shot(device, resume, chunk);
        latencies_.push_back(ms_since(start));
        ++ops_;
      } catch (const std::exception& e) {
        fail(e.what());
      }
    }
  }

  // Each device's first connection, unmeasured: the session that `resumed` goes on to resume.
  asio::awaitable<void> prime(int worker, int workers) {
    std::vector<char> chunk(kSmallChunk);
    for (int i = worker; i < o_.devices; i += workers) {
      Device& device = devices_[static_cast<std::size_t>(i)];
      try {
        co_await one_shot(device, false, chunk);
      } catch (const std::exception& e) {
        fail(std::string("priming: ") + e.what());
      }
    }
  }

  asio::awaitable<void> keepalive(int device_index, int requests) {
    try {
      auto stream = co_await connect(devices_[static_cast<std::size_t>(device_index)], false);
      beast::flat_buffer buffer;
      std::vector<char> chunk(kSmallChunk);
      const auto verb = o_.body.empty() ? http::verb::get : http::verb::post;
      for (int i = 0; i < requests; ++i) {
        const auto start = Clock::now();
        co_await exchange(*stream, buffer, chunk, verb, o_.body, false, nullptr);
        latencies_.push_back(ms_since(start));
        ++ops_;
      }
    } catch (const std::exception& e) {
      fail(e.what());
    }
  }

  asio::awaitable<void> download(int device_index) {
    try {
      auto stream = co_await connect(devices_[static_cast<std::size_t>(device_index)], false);
      beast::flat_buffer buffer;
      std::vector<char> chunk(kLargeChunk);
      openssl::MdCtxPtr hash(EVP_MD_CTX_new());
      for (int i = 0; i < o_.repeat; ++i) {
        const auto start = Clock::now();
        EVP_DigestInit_ex(hash.get(), EVP_sha256(), nullptr);
        const auto got =
            co_await exchange(*stream, buffer, chunk, http::verb::get, {}, false, hash.get());
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        EVP_DigestFinal_ex(hash.get(), md, &md_len);
        const auto hex = hex_encode(std::string_view(reinterpret_cast<char*>(md), md_len));
        if (got != o_.size || hex != o_.sha256) {
          throw std::runtime_error("downloaded " + std::to_string(got) + " bytes with SHA-256 " +
                                   hex + ", expected " + std::to_string(o_.size) + " with " +
                                   o_.sha256);
        }
        bytes_ += got;
        latencies_.push_back(ms_since(start));
        ++ops_;
      }
    } catch (const std::exception& e) {
      fail(e.what());
    }
  }

  // Opens one connection per device (a request on each proves the server accepted it), holds
  // them all, and reads the server's RSS once every one is open.
  asio::awaitable<void> idle_open(int worker, int workers) {
    std::vector<char> chunk(kSmallChunk);
    for (int i = worker; i < o_.devices; i += workers) {
      try {
        auto stream = co_await connect(devices_[static_cast<std::size_t>(i)], false);
        beast::flat_buffer buffer;
        co_await exchange(*stream, buffer, chunk, http::verb::get, {}, false, nullptr);
        held_.push_back(std::move(stream));
        ++ops_;
      } catch (const std::exception& e) {
        fail(e.what());
      }
    }
  }

  int execute() {
    if (auto r = setup_tls(); !r) {
      std::cerr << "fwdepot-loadgen: " << r.error().message() << "\n";
      return 2;
    }
    endpoint_ = tcp::endpoint(asio::ip::make_address(o_.host), o_.port);
    const int workers = o_.concurrency > 0 ? o_.concurrency : o_.devices;
    const auto bound =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.max_seconds));
    const auto deadline = Clock::now() + bound;
    auto run_all = [&](auto&& spawn) {
      for (int w = 0; w < workers; ++w) {
        asio::co_spawn(io_, spawn(w), asio::detached);
      }
      io_.restart();
      io_.run_until(deadline);
      if (!io_.stopped()) {
        fail("the run did not end within --max-seconds");
        io_.stop();
        return false;
      }
      return true;
    };

    if (o_.scenario == "resumed") {
      if (!run_all([&](int w) { return prime(w, workers); })) {
        return report(0, {}, {});
      }
    }
    const auto before = sample_server(o_.server_pid);
    if (!before) {
      std::cerr << "fwdepot-loadgen: " << before.error().message() << "\n";
      return 2;
    }
    const double client_before = own_cpu_seconds();
    const auto start = Clock::now();
    if (o_.scenario == "full" || o_.scenario == "resumed") {
      const bool resume = o_.scenario == "resumed";
      run_all([&](int w) { return handshakes(w, workers, resume); });
    } else if (o_.scenario == "keepalive") {
      run_all([&](int w) {
        const int share = o_.requests / workers + (w < o_.requests % workers ? 1 : 0);
        return keepalive(w % o_.devices, share);
      });
    } else if (o_.scenario == "download") {
      run_all([&](int w) { return download(w % o_.devices); });
    } else if (o_.scenario == "idle") {
      run_all([&](int w) { return idle_open(w, workers); });
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const auto after = sample_server(o_.server_pid);
    client_cpu_ = own_cpu_seconds() - client_before;
    if (!after) {
      fail(after.error().message() + " after the run");
    }
    const int code = report(seconds, *before, after ? *after : *before);
    held_.clear();
    return code;
  }

 private:
  static double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }

  double percentile(double p) {
    if (latencies_.empty()) {
      return 0;
    }
    const auto k = static_cast<std::size_t>(p * static_cast<double>(latencies_.size() - 1));
    std::nth_element(latencies_.begin(), latencies_.begin() + static_cast<long>(k),
                     latencies_.end());
    return latencies_[k];
  }

  int report(double seconds, const ProcSample& before, const ProcSample& after) {
    const double cpu = after.cpu_seconds - before.cpu_seconds;
    const double mib = static_cast<double>(bytes_) / (1024.0 * 1024.0);
    std::printf(
        "scenario=%s tls=%s devices=%d ops=%llu errors=%llu seconds=%.3f rate=%.1f p50_ms=%.3f "
        "p99_ms=%.3f p999_ms=%.3f mib=%.1f mib_s=%.1f server_cpu_s=%.3f server_cpu_us_per_op=%.1f "
        "server_cpu_s_per_gib=%.3f server_rss_kib=%ld server_rss_before_kib=%ld "
        "server_rss_peak_kib=%ld client_cpu_s=%.3f\n",
        o_.scenario.c_str(), o_.tls.c_str(), o_.devices, static_cast<unsigned long long>(ops_),
        static_cast<unsigned long long>(errors_), seconds,
        seconds > 0 ? static_cast<double>(ops_) / seconds : 0.0, percentile(0.5), percentile(0.99),
        percentile(0.999), mib, seconds > 0 ? mib / seconds : 0.0, cpu,
        ops_ > 0 ? cpu * 1e6 / static_cast<double>(ops_) : 0.0, mib > 0 ? cpu * 1024.0 / mib : 0.0,
        after.rss_kib, before.rss_kib, after.hwm_kib, client_cpu_);
    if (errors_ > 0) {
      std::fprintf(stderr, "fwdepot-loadgen: %llu errors; the first: %s\n",
                   static_cast<unsigned long long>(errors_), first_error_.c_str());
      return 1;
    }
    return 0;
  }

  // This process's CPU time: whether the client, not the server, was the bottleneck.
  static double own_cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  }

  Options o_;
  double client_cpu_ = 0;
  std::vector<Device> devices_;
  asio::io_context io_{1};
  ssl::context tls_;
  tcp::endpoint endpoint_;
  std::vector<double> latencies_;
  std::vector<std::unique_ptr<SslStream>> held_;
  std::uint64_t ops_ = 0;
  std::uint64_t errors_ = 0;
  std::uint64_t bytes_ = 0;
  std::string first_error_;
};

result<std::string> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error(core::error::invalid_argument, "cannot read " + path);
  }
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// One certificate per device, from the device CA (the same PKI code `fwdepot certs` uses).
result<std::vector<Device>> mint_devices(const Options& o) {
  auto ca_pem = slurp(o.ca);
  auto key_pem = slurp(o.ca_key);
  if (!ca_pem || !key_pem) {
    return Error(core::error::invalid_argument, "the device CA (--ca, --ca-key) cannot be read");
  }
  auto ca = certs::CertificateAuthority::from_pem(*ca_pem, *key_pem);
  if (!ca) {
    return ca.error();
  }
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  std::vector<Device> devices;
  devices.reserve(static_cast<std::size_t>(o.devices));
  char id[32];
  for (int i = 0; i < o.devices; ++i) {
    auto key = PrivateKey::generate(KeyType::ecdsa_p256);
    if (!key) {
      return key.error();
    }
    std::snprintf(id, sizeof id, "bench-%06d", i);
    auto cert = ca->issue_device(key->public_key(), id, o.model, now - 60, 1);
    if (!cert) {
      return cert.error();
    }
    devices.push_back(Device{std::move(*cert), std::move(*key), nullptr});
  }
  return devices;
}

}  // namespace
}  // namespace fwdepot::bench

int main(int argc, char** argv) {
  using namespace fwdepot::bench;
  Options o;
  CLI::App app{"fwdepot-loadgen: simulated devices against an HTTPS server on loopback"};
  app.add_option("--scenario", o.scenario, "full, resumed, keepalive, download or idle")
      ->required()
      ->check(CLI::IsMember({"full", "resumed", "keepalive", "download", "idle"}));
  app.add_option("--port", o.port, "the server's port on --host")->required();
  app.add_option("--host", o.host, "a loopback address")
      ->check(CLI::IsMember({"127.0.0.1", "::1"}));
  app.add_option("--ca", o.ca, "device CA certificate (PEM); also the server's trust anchor")
      ->required();
  app.add_option("--ca-key", o.ca_key, "device CA key (PEM): mints the devices' certificates")
      ->required();
  app.add_option("--model", o.model, "the devices' model (certificate OU)");
  app.add_option("--devices", o.devices, "simulated devices, each with its own certificate")
      ->check(CLI::Range(1, 100000));
  app.add_option("--concurrency", o.concurrency, "devices at work at once (default: all)")
      ->check(CLI::Range(0, 100000));
  app.add_option("--connections", o.connections, "full/resumed: connections in all")
      ->check(CLI::Range(0, 10000000));
  app.add_option("--requests", o.requests, "keepalive: requests in all")
      ->check(CLI::Range(0, 100000000));
  app.add_option("--repeat", o.repeat, "download: downloads per device")
      ->check(CLI::Range(1, 100000));
  app.add_option("--path", o.path, "the request target");
  app.add_option("--body", o.body, "keepalive: JSON POSTed on each request (a check-in)");
  app.add_option("--expect-status", o.expect_status, "the status every answer must have");
  app.add_option("--sha256", o.sha256, "download: the payload's SHA-256 (lower-case hex)");
  app.add_option("--size", o.size, "download: the payload's size in bytes");
  app.add_option("--tls", o.tls, "TLS version")->check(CLI::IsMember({"1.2", "1.3"}));
  app.add_option("--server-pid", o.server_pid, "the server's pid: CPU and memory from /proc");
  app.add_option("--max-seconds", o.max_seconds, "bound on the whole run")
      ->check(CLI::Range(1.0, 3600.0));
  CLI11_PARSE(app, argc, argv);
  if (o.scenario == "download" && (o.sha256.size() != 64 || o.size == 0)) {
    std::cerr << "fwdepot-loadgen: download needs --sha256 and --size\n";
    return 2;
  }
  if (o.scenario == "keepalive" && o.requests == 0) {
    o.requests = o.devices;
  }
  auto devices = mint_devices(o);
  if (!devices) {
    std::cerr << "fwdepot-loadgen: " << devices.error().message() << "\n";
    return 2;
  }
  Run run(std::move(o), std::move(*devices));
  return run.execute();
}
