// SPDX-License-Identifier: Apache-2.0
// The connections: accepting, the TLS handshake and the peer's identity, and the close. What
// happens between handshake and close is the request path, https/requests.hpp.
#include "https/session.hpp"

#include "https/requests.hpp"
#include "https/tls_stream.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>

#include <optional>
#include <vector>

namespace fwdepot::server {
namespace {

namespace ssl = boost::asio::ssl;
using namespace requests;  // NOLINT: this file is the request path's one TLS instantiation
using tcp = asio::ip::tcp;
using Stream = TlsStream;

constexpr std::chrono::seconds kShutdownTimeout{5};

// A reason for a failed handshake from a closed set, for metrics and logs.
std::string handshake_reason(const error_code& ec, Stream& stream) {
  if (ec == beast::error::timeout) {
    return "timeout";
  }
  const long verify = SSL_get_verify_result(stream.native_handle());
  if (verify != X509_V_OK) {
    return X509_verify_cert_error_string(verify);
  }
  if (ec.category() == asio::error::get_ssl_category()) {
    const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    if (reason != nullptr) {
      return reason;
    }
  }
  if (ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == ssl::error::stream_truncated) {
    return "peer closed";
  }
  return "other";
}

std::optional<certs::DeviceIdentity> peer_identity(Stream& stream) {
  return device_identity(openssl::X509Ptr(SSL_get1_peer_certificate(stream.native_handle())));
}

struct Connection;

}  // namespace

// A live session's entry in the server's registry: the registry's links and the way to its
// connection. The shutdown's wake-up is posted to the connection's executor and may run after
// the connection ended: it holds the handle, whose `conn` is null by then. `conn` is set before
// the handle is registered, cleared under the registry mutex on the connection's executor, and
// read under the mutex or there. `parks` is written under the mutex on that executor too.
struct SessionHandle {
  Connection* conn = nullptr;
  SessionHandle* prev = nullptr;
  SessionHandle* next = nullptr;
  // While parked (under the registry mutex): the parked list's links and when it parked.
  SessionHandle* older = nullptr;
  SessionHandle* newer = nullptr;
  std::chrono::steady_clock::time_point parked_at;
  std::uint32_t parks = 0;  // counts the parks: a timeout posted for an earlier one is stale
  bool parked = false;
};

namespace {

// One connection from its accept to its close. Between requests no coroutine holds it: it
// waits for readability in park(), as little as a TLS connection can be, and a new coroutine
// serves it when its next request arrives. Whoever holds it last closes it.
struct Connection {
  Connection(ServerContext& c, Listener listener, std::string remote,
             std::unique_ptr<Stream> tls_stream)
      : ctx(c),
        l(listener),
        count(listener == Listener::device ? c.device_connections : c.admin_connections),
        peer(std::move(remote)),
        stream(std::move(tls_stream)) {
    ++count;
    ++ctx.sessions;
    ctx.metrics.connection_opened();
    handle->conn = this;
    ctx.register_session(*handle);
  }
  ~Connection() {
    ctx.unregister_session(*handle);
    stream.reset();  // closes the socket
    ctx.metrics.connection_closed();
    --count;
    if (--ctx.sessions == 0 && ctx.draining && ctx.on_drained) {
      ctx.on_drained();
    }
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  ServerContext& ctx;
  const Listener l;
  std::atomic<std::size_t>& count;  // the listener's open connections
  const std::string peer;
  std::unique_ptr<Stream> stream;
  std::optional<certs::DeviceIdentity> device;  // on the device listener, after the handshake
  // Shutdown cancels the wait for a next request (`idle`), never a request in progress.
  std::shared_ptr<SessionHandle> handle = std::make_shared<SessionHandle>();
  bool idle = false;  // waiting for a next request, nothing of it arrived
  bool first = true;  // no request read yet
};

// Sessions report failures as values; an exception here is a bug, and it must not take the
// server down with it.
void log_session_exception(const std::exception_ptr& e) {
  if (e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("session_exception error={}", log_value(ex.what()));
    }
  }
}

// Sends close_notify and waits a bounded time for the peer's, then closes.
void close_connection(std::unique_ptr<Connection> conn) {
  Stream& stream = *conn->stream;
  stream.expires_after(kShutdownTimeout);
  stream.async_shutdown([conn = std::move(conn)](const error_code&) {});
}

asio::awaitable<void> serve(std::unique_ptr<Connection> conn, bool readable);

// Waits, within the idle timeout (the server's sweep of parked connections), for the
// connection's next request.
void park(std::unique_ptr<Connection> conn) {
  Connection& c = *conn;
  if (c.ctx.draining) {
    close_connection(std::move(conn));
    return;
  }
  c.idle = true;
  c.stream->expires_never();
  c.ctx.park(*c.handle);
  c.stream->async_wait_readable([conn = std::move(conn)](const error_code& ec) mutable {
    conn->idle = false;
    conn->ctx.unpark(*conn->handle);
    if (ec) {
      // Idle too long, or the server drains: the connection ends as a request-less one does.
      close_connection(std::move(conn));
      return;
    }
    auto executor = conn->stream->get_executor();
    asio::co_spawn(executor, serve(std::move(conn), true), log_session_exception);
  });
}

// Serves requests until the connection ends or falls idle.
asio::awaitable<void> serve(std::unique_ptr<Connection> conn, bool readable) {
  Connection& c = *conn;
  auto requests =
      serve_requests(*c.stream, c.l, c.ctx, c.device, c.peer, c.idle, c.first, readable);
  if (co_await std::move(requests)) {
    park(std::move(conn));
  } else {
    close_connection(std::move(conn));
  }
}

asio::awaitable<void> run_session(std::unique_ptr<Connection> conn) {
  Connection& c = *conn;
  Stream& stream = *c.stream;
  stream.expires_after(c.ctx.options.handshake_timeout);
  if (auto [ec] = co_await stream.async_handshake(kNoThrow); ec) {
    const std::string reason = handshake_reason(ec, stream);
    c.ctx.metrics.handshake_failure(listener_name(c.l), reason);
    spdlog::info("tls_refused listener={} peer={} reason={}", listener_name(c.l), c.peer,
                 log_value(reason));
    co_return;
  }
  if (c.l == Listener::device) {
    c.device = peer_identity(stream);
    if (!c.device) {
      c.ctx.metrics.handshake_failure(listener_name(c.l), "certificate CN is not a device id");
      spdlog::info("tls_refused listener=device peer={} reason=\"CN is not a device id\"", c.peer);
      co_return;
    }
  }
  // The first request follows the handshake at once: read it here rather than park.
  auto requests = serve(std::move(conn), true);
  co_await std::move(requests);
}

// A wake-up for a session waiting for its next request: it stops waiting if, when the wake-up
// runs, it still lives and is idle (and, with `parks`, is still in that same park).
struct Wake {
  asio::any_io_executor executor;
  std::shared_ptr<SessionHandle> handle;
  std::optional<std::uint32_t> parks;
};

// Posted outside the registry's lock, which every park and wake-up takes.
void post_wakes(std::vector<Wake>& wakes) {
  for (Wake& w : wakes) {
    asio::post(w.executor, [handle = std::move(w.handle), parks = w.parks] {
      if (handle->conn != nullptr && (!parks || handle->parks == *parks) && handle->conn->idle) {
        handle->conn->stream->cancel();
      }
    });
  }
}

}  // namespace

void ServerContext::register_session(SessionHandle& h) {
  std::lock_guard lock(registry_mutex_);
  h.next = registry_;
  if (registry_ != nullptr) {
    registry_->prev = &h;
  }
  registry_ = &h;
}

void ServerContext::unregister_session(SessionHandle& h) {
  std::lock_guard lock(registry_mutex_);
  unlink_parked(h);
  (h.prev != nullptr ? h.prev->next : registry_) = h.next;
  if (h.next != nullptr) {
    h.next->prev = h.prev;
  }
  h.prev = h.next = nullptr;
  h.conn = nullptr;
}

void ServerContext::wake_idle_sessions() {
  std::vector<Wake> wakes;
  {
    std::lock_guard lock(registry_mutex_);
    for (SessionHandle* h = registry_; h != nullptr; h = h->next) {
      // Registered, the connection lives; its executor is the one it was accepted with.
      wakes.push_back({h->conn->stream->get_executor(), h->conn->handle, std::nullopt});
    }
  }
  post_wakes(wakes);
}

void ServerContext::park(SessionHandle& h) {
  std::lock_guard lock(registry_mutex_);
  ++h.parks;
  h.parked = true;
  h.parked_at = std::chrono::steady_clock::now();
  h.older = parked_newest_;
  h.newer = nullptr;
  (parked_newest_ != nullptr ? parked_newest_->newer : parked_oldest_) = &h;
  parked_newest_ = &h;
}

void ServerContext::unpark(SessionHandle& h) {
  std::lock_guard lock(registry_mutex_);
  ++h.parks;  // a sweep's wake-up for the park that ends here, already posted, finds it stale
  unlink_parked(h);
}

void ServerContext::unlink_parked(SessionHandle& h) {
  if (!h.parked) {
    return;
  }
  (h.older != nullptr ? h.older->newer : parked_oldest_) = h.newer;
  (h.newer != nullptr ? h.newer->older : parked_newest_) = h.older;
  h.older = h.newer = nullptr;
  h.parked = false;
}

void ServerContext::end_overdue_parks() {
  std::vector<Wake> due;
  {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(registry_mutex_);
    // Every park lasts as long, so the oldest are the first due.
    while (parked_oldest_ != nullptr && now - parked_oldest_->parked_at >= options.idle_timeout) {
      SessionHandle& h = *parked_oldest_;
      unlink_parked(h);
      // For this park only: by the time the wake-up runs, the connection may have woken (and
      // parked again).
      due.push_back({h.conn->stream->get_executor(), h.conn->handle, h.parks});
    }
  }
  post_wakes(due);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, Listener l, ServerContext& ctx) {
  auto& connections = l == Listener::device ? ctx.device_connections : ctx.admin_connections;
  while (true) {
    // One strand per connection, so that its handlers never run at once on several threads.
    // With one thread they cannot anyway, and the io_context's own executor is cheaper to
    // carry: a strand does not fit in any_io_executor's small buffer, so every operation's
    // work tracking would allocate a copy of it.
    const asio::any_io_executor executor =
        ctx.one_thread ? acceptor.get_executor()
                       : asio::any_io_executor(asio::make_strand(acceptor.get_executor()));
    auto [ec, socket] = co_await acceptor.async_accept(executor, kNoThrow);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
      co_return;
    }
    if (ec) {
      spdlog::warn("accept_failed listener={} error={}", listener_name(l), log_value(ec.message()));
      continue;
    }
    if (connections >= ctx.options.max_connections) {
      ctx.metrics.handshake_failure(listener_name(l), "connection limit");
      socket.close(ec);
      continue;
    }
    // Without Nagle's algorithm: a response written after the session tickets (or in more than
    // one write) would otherwise wait for the peer's delayed ACK, 40 ms on Linux.
    socket.set_option(tcp::no_delay(true), ec);
    const auto remote = socket.remote_endpoint(ec);
    std::string peer = remote.address().to_string() + ":" + std::to_string(remote.port());
    // The SSL holds its own reference to the context: a CRL reload leaves it in force here.
    std::shared_ptr<ssl::context> tls = l == Listener::device ? ctx.tls.device() : ctx.tls.admin();
    auto stream = Stream::create(std::move(socket), tls->native_handle());
    if (!stream) {
      spdlog::error("tls_unavailable listener={} peer={} error={}", listener_name(l), peer,
                    log_value(stream.error().message()));
      continue;
    }
    auto conn = std::make_unique<Connection>(ctx, l, std::move(peer), std::move(*stream));
    asio::co_spawn(executor, run_session(std::move(conn)), log_session_exception);
  }
}

}  // namespace fwdepot::server
