// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/server/server.hpp"

#include "coaps/listener.hpp"
#include "fwdepot/storage/image_store.hpp"
#include "fwdepot/storage/sqlite_catalog.hpp"
#include "https/session.hpp"
#include "service/artifact_hashing.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <unistd.h>
#include <algorithm>
#include <charconv>

#include <csignal>
#include <ctime>
#include <functional>
#include <thread>

namespace fwdepot::server {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// "ADDR:PORT", "[v6]:PORT". Port 0 asks the kernel for a free one.
result<tcp::endpoint> parse_listen(std::string_view spec) {
  const auto colon = spec.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Error(core::error::invalid_argument,
                 "listen address '" + std::string(spec) + "': expected ADDR:PORT");
  }
  std::string_view host = spec.substr(0, colon);
  const std::string_view port_text = spec.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  const auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || p != port_text.data() + port_text.size() ||
      port > 65535) {
    return Error(core::error::invalid_argument,
                 "listen address '" + std::string(spec) + "': bad port");
  }
  boost::system::error_code aec;
  const auto address = asio::ip::make_address(std::string(host), aec);
  if (aec) {
    return Error(core::error::invalid_argument,
                 "listen address '" + std::string(spec) + "': not an IP address");
  }
  return tcp::endpoint(address, static_cast<std::uint16_t>(port));
}

result<void> bind_acceptor(tcp::acceptor& acceptor, const std::string& spec, const char* what) {
  auto endpoint = parse_listen(spec);
  if (!endpoint) {
    return endpoint.error();
  }
  boost::system::error_code ec;
  acceptor.open(endpoint->protocol(), ec);
  if (!ec) {
    acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor.bind(*endpoint, ec);
  }
  if (!ec) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return Error(ec, std::string(what) + " listener " + spec);
  }
  return {};
}

std::string endpoint_text(const tcp::acceptor& a) {
  boost::system::error_code ec;
  const auto e = a.local_endpoint(ec);
  if (ec) {
    return "closed";
  }
  return e.address().is_v6() ? "[" + e.address().to_string() + "]:" + std::to_string(e.port())
                             : e.address().to_string() + ":" + std::to_string(e.port());
}

unsigned thread_count(const ServerOptions& o) {
  return std::max(1u, o.threads != 0 ? o.threads : std::thread::hardware_concurrency());
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  std::unique_ptr<ServerTls> tls;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<ArtifactHashing> hashing;  // uses backend
  std::unique_ptr<DeviceService> devices;
  std::unique_ptr<AdminService> admin;
  std::unique_ptr<DdiService> ddi;
  std::unique_ptr<CheckinWriter> checkins;
  Metrics metrics;
  std::unique_ptr<ServerContext> ctx;

  // Everything below uses the io_context; ~Impl destroys them, and then the io_context with
  // any suspended sessions, before the state above that those sessions refer to.
  std::unique_ptr<asio::io_context> io;
  std::optional<tcp::acceptor> device_acceptor;
  std::optional<tcp::acceptor> admin_acceptor;
  std::unique_ptr<CoapsListener> coaps;
  std::optional<asio::signal_set> signals;
  std::optional<asio::steady_timer> grace_timer;
  std::optional<asio::steady_timer> idle_sweep;  // ends connections parked too long
  unsigned threads = 1;                          // serving the io_context, fixed at creation
  bool shutting_down = false;  // touched only on the io_context's threads, under `strand`
  std::optional<asio::strand<asio::io_context::executor_type>> strand;

  ~Impl() {
    grace_timer.reset();
    idle_sweep.reset();
    signals.reset();
    device_acceptor.reset();
    admin_acceptor.reset();
    coaps.reset();
    // Destroying the io_context destroys the connections the grace period cut short; the
    // last of them must not report the drain (a post to `strand`) to a server going away.
    if (ctx) {
      ctx->on_drained = nullptr;
    }
    // The strand's state lives in a service of the io_context: it goes first.
    strand.reset();
    // Its last callbacks post to the io_context, which must still be there to take them.
    checkins.reset();
    io.reset();
  }

  void wait_for_signal() {
    signals->async_wait([this](const boost::system::error_code& ec, int signo) {
      if (ec) {
        return;
      }
      if (signo == SIGHUP) {
        spdlog::info("signal name=SIGHUP action=reload_tls");
        (void)tls->reload();  // logged either way; the last good contexts stay in force
        wait_for_signal();
        return;
      }
      spdlog::info("signal number={} action=shutdown", signo);
      begin_shutdown();
    });
  }

  // Every so often (an eighth of the idle timeout, within 10 ms and 1 s), the parked
  // connections due are woken: each ends within that much after its idle timeout.
  void sweep_idle_connections() {
    const auto period = std::clamp<std::chrono::steady_clock::duration>(
        options.idle_timeout / 8, std::chrono::milliseconds(10), std::chrono::seconds(1));
    idle_sweep->expires_after(period);
    idle_sweep->async_wait([this](const boost::system::error_code& ec) {
      if (ec || shutting_down) {
        return;  // the shutdown wakes every idle connection itself
      }
      ctx->end_overdue_parks();
      sweep_idle_connections();
    });
  }

  // Stop accepting, wake idle keep-alive sessions so they close, and give in-flight requests
  // until the grace deadline. The io_context runs out of work, and run() returns, as soon as
  // the last session ends; the deadline stops it regardless.
  void begin_shutdown() {
    if (shutting_down) {
      return;
    }
    shutting_down = true;
    ctx->draining = true;
    boost::system::error_code ec;
    device_acceptor->close(ec);
    admin_acceptor->close(ec);
    if (coaps) {
      coaps->stop();
    }
    signals->cancel(ec);
    if (idle_sweep) {
      idle_sweep->cancel();
    }
    ctx->wake_idle_sessions();
    if (ctx->sessions == 0) {
      return;
    }
    spdlog::info("draining grace_ms={} connections={}", options.shutdown_grace.count(),
                 ctx->sessions.load());
    grace_timer.emplace(*strand, options.shutdown_grace);
    grace_timer->async_wait([this](const boost::system::error_code& e) {
      if (!e) {
        spdlog::warn("grace_over closing_connections={}", ctx->sessions.load());
        io->stop();
      }
    });
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

result<void> check_threshold(const ServerOptions& o) {
  if (o.threshold == 0 || o.threshold > o.trusted_keys.size()) {
    return Error(core::error::invalid_argument,
                 "signing threshold " + std::to_string(o.threshold) + " with " +
                     std::to_string(o.trusted_keys.size()) + " trusted key(s)");
  }
  return {};
}

result<void> check_options(const ServerOptions& o) {
  for (const auto* spec : {&o.device_listen, &o.admin_listen, &o.coaps_listen}) {
    if (spec->empty() && spec == &o.coaps_listen) {
      continue;  // CoAPS off
    }
    if (auto e = parse_listen(*spec); !e) {
      return e.error();
    }
  }
  if (auto t = check_threshold(o); !t) {
    return t.error();
  }
  const TlsMaterial material{o.server_cert_pem, o.server_key_pem, o.ca_pem, o.server_cert_path,
                             o.server_key_path};
  if (auto tls = ServerTls::create(material, o.crl_path); !tls) {
    return tls.error();
  }
  return {};
}

result<std::unique_ptr<Server>> Server::create(ServerOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  const ServerOptions& o = impl->options;
  if (auto t = check_threshold(o); !t) {
    return t.error();
  }
  const TlsMaterial material{o.server_cert_pem, o.server_key_pem, o.ca_pem, o.server_cert_path,
                             o.server_key_path};
  auto tls = ServerTls::create(material, o.crl_path);
  if (!tls) {
    return tls.error();
  }
  impl->tls = std::move(*tls);

  auto catalog = storage::SqliteCatalog::open(o.database);
  if (!catalog) {
    return Error(catalog.error().code, o.database.string() + ": " + catalog.error().message());
  }
  auto blobs = storage::FileBlobStore::open(o.blobs);
  if (!blobs) {
    return Error(blobs.error().code, o.blobs.string() + ": " + blobs.error().message());
  }
  auto report = storage::recover_storage(**catalog, **blobs);
  if (!report) {
    return report.error();
  }
  if (report->removed_temp_files > 0) {
    spdlog::info("storage_recovery removed_temp_files={}", report->removed_temp_files);
  }
  for (const auto& d : report->orphan_blobs) {
    spdlog::warn("storage_orphan_blob sha256={}", hex_encode(d));
  }
  for (const auto id : report->broken_images) {
    spdlog::error("storage_broken_image image={}", id);
  }
  if (report->hashed_images > 0) {
    spdlog::info("storage_hashes_filled images={}", report->hashed_images);
  }
  // Check-ins are written by a thread of their own on a second connection to the same file,
  // so that their commits never hold the catalog lock the serving threads read under.
  auto writer_catalog = storage::SqliteCatalog::open(o.database);
  if (!writer_catalog) {
    return Error(writer_catalog.error().code,
                 o.database.string() + ": " + writer_catalog.error().message());
  }
  impl->threads = thread_count(o);
  impl->io = std::make_unique<asio::io_context>();
  // With one serving thread, a batch's answers go out in one post to it: each check-in's
  // coroutine then resumes in turn without a hop of its own (see record_checkin). The writer's
  // wake-up is posted there too, so that it runs once the round of the event loop that queued
  // the check-ins is through: one wake-up and one transaction for all of them.
  CheckinWriter::Deliver deliver;
  if (impl->threads == 1) {
    deliver = [ex = impl->io->get_executor()](std::function<void()> f) {
      asio::post(ex, std::move(f));
    };
  }
  impl->checkins = std::make_unique<CheckinWriter>(
      std::move(*writer_catalog), [] { return static_cast<std::int64_t>(std::time(nullptr)); }, 256,
      deliver, deliver);
  impl->backend = std::make_unique<Backend>(std::move(*catalog), std::move(*blobs));
  impl->devices = std::make_unique<DeviceService>(*impl->backend, impl->metrics);
  impl->hashing = std::make_unique<ArtifactHashing>(*impl->backend);
  impl->admin = std::make_unique<AdminService>(
      *impl->backend, o.trusted_keys, o.threshold, AdminLimits{o.max_image_bytes},
      [hashing = impl->hashing.get()](std::int64_t id) { hashing->add(id); });
  impl->ctx = std::make_unique<ServerContext>(o, *impl->tls, *impl->backend, *impl->devices,
                                              *impl->admin, impl->metrics);
  impl->ctx->checkins = impl->checkins.get();
  impl->ctx->one_thread = impl->threads == 1;
  if (!o.ddi_tenant.empty()) {
    impl->ddi = std::make_unique<DdiService>(*impl->backend, impl->metrics,
                                             DdiOptions{o.ddi_tenant, o.ddi_polling_sleep});
    impl->ctx->ddi = impl->ddi.get();
  }

  impl->strand.emplace(asio::make_strand(*impl->io));
  impl->device_acceptor.emplace(*impl->io);
  impl->admin_acceptor.emplace(*impl->io);
  if (auto r = bind_acceptor(*impl->device_acceptor, o.device_listen, "device"); !r) {
    return r.error();
  }
  if (auto r = bind_acceptor(*impl->admin_acceptor, o.admin_listen, "admin"); !r) {
    return r.error();
  }
  if (!o.coaps_listen.empty()) {
    const CoapsLimits limits{o.coaps_max_sessions, o.coaps_max_sessions_per_address,
                             std::chrono::ceil<std::chrono::seconds>(o.coaps_idle_timeout),
                             o.coaps_max_handshakes};
    auto coaps = CoapsListener::create(*impl->io, o.coaps_listen, material, limits, *impl->tls,
                                       *impl->devices, *impl->backend, impl->metrics);
    if (!coaps) {
      return coaps.error();
    }
    impl->coaps = std::move(*coaps);
    impl->coaps->set_https_port(impl->device_acceptor->local_endpoint().port());
    impl->ctx->coaps_port = impl->coaps->port();
  }
  impl->signals.emplace(*impl->strand, SIGINT, SIGTERM, SIGHUP);
  auto* raw = impl.get();
  impl->ctx->on_drained = [raw] {
    asio::post(*raw->strand, [raw] {
      if (raw->grace_timer) {
        raw->grace_timer->cancel();
      }
    });
  };
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

std::uint16_t Server::device_port() const {
  return impl_->device_acceptor->local_endpoint().port();
}
std::uint16_t Server::admin_port() const { return impl_->admin_acceptor->local_endpoint().port(); }
std::uint16_t Server::coaps_port() const { return impl_->coaps ? impl_->coaps->port() : 0; }

void Server::run() {
  Impl& s = *impl_;
  spdlog::info("listening pid={} device={} admin={} coaps={} threads={}", ::getpid(),
               endpoint_text(*s.device_acceptor), endpoint_text(*s.admin_acceptor),
               s.coaps ? s.coaps->address() : "-", thread_count(s.options));
  if (s.coaps) {
    s.coaps->start(s.threads);
  }
  asio::co_spawn(*s.io, accept_loop(*s.device_acceptor, Listener::device, *s.ctx), asio::detached);
  asio::co_spawn(*s.io, accept_loop(*s.admin_acceptor, Listener::admin, *s.ctx), asio::detached);
  s.wait_for_signal();
  s.idle_sweep.emplace(*s.strand);
  s.sweep_idle_connections();

  const unsigned n = s.threads;
  std::vector<std::thread> threads;
  threads.reserve(n - 1);
  for (unsigned i = 1; i < n; ++i) {
    threads.emplace_back([&s] { s.io->run(); });
  }
  s.io->run();
  for (auto& t : threads) {
    t.join();
  }
  spdlog::info("stopped");
}

void Server::stop() {
  asio::post(*impl_->strand, [s = impl_.get()] { s->begin_shutdown(); });
}

}  // namespace fwdepot::server
