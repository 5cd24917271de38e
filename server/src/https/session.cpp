// SPDX-License-Identifier: Apache-2.0
// The connections: accepting, the TLS handshake and the peer's identity, and the close. What
// happens between handshake and close is the request path, https/requests.hpp.
#include "https/session.hpp"

#include "https/requests.hpp"
#include "https/tls_stream.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>

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

asio::awaitable<void> run_session(tcp::socket socket, Listener l, ServerContext& ctx) {
  ctx.metrics.connection_opened();
  struct Closer {
    ServerContext& ctx;
    ~Closer() { ctx.metrics.connection_closed(); }
  } closer{ctx};
  error_code ignored;
  const auto remote = socket.remote_endpoint(ignored);
  const std::string peer = remote.address().to_string() + ":" + std::to_string(remote.port());

  // The SSL holds its own reference to the context: a CRL reload leaves it in force here.
  std::shared_ptr<ssl::context> tls = l == Listener::device ? ctx.tls.device() : ctx.tls.admin();
  auto created = Stream::create(std::move(socket), tls->native_handle());
  if (!created) {
    spdlog::error("tls_unavailable listener={} peer={} error={}", listener_name(l), peer,
                  log_value(created.error().message()));
    co_return;
  }
  Stream& stream = **created;

  // Shutdown cancels the wait for a next request, never a request in progress.
  bool idle = false;
  auto handle = std::make_shared<SessionHandle>();
  handle->strand = stream.get_executor();
  handle->cancel_if_idle = [&idle, &stream] {
    if (idle) {
      stream.cancel();
    }
  };
  struct Registration {
    ServerContext& ctx;
    std::shared_ptr<SessionHandle> handle;
    ~Registration() {
      handle->cancel_if_idle = nullptr;
      ctx.unregister_session(handle);
    }
  } registration{ctx, handle};
  ctx.register_session(handle);
  stream.expires_after(ctx.options.handshake_timeout);
  if (auto [ec] = co_await stream.async_handshake(kNoThrow); ec) {
    const std::string reason = handshake_reason(ec, stream);
    ctx.metrics.handshake_failure(listener_name(l), reason);
    spdlog::info("tls_refused listener={} peer={} reason={}", listener_name(l), peer,
                 log_value(reason));
    co_return;
  }
  std::optional<certs::DeviceIdentity> device;
  if (l == Listener::device) {
    device = peer_identity(stream);
    if (!device) {
      ctx.metrics.handshake_failure(listener_name(l), "certificate CN is not a device id");
      spdlog::info("tls_refused listener=device peer={} reason=\"CN is not a device id\"", peer);
      co_return;
    }
  }
  co_await serve_requests(stream, l, ctx, device, peer, idle);
  stream.expires_after(kShutdownTimeout);
  (void)co_await stream.async_shutdown(kNoThrow);
}

}  // namespace

void ServerContext::register_session(const std::shared_ptr<SessionHandle>& h) {
  std::lock_guard lock(registry_mutex_);
  registry_.insert(h);
}

void ServerContext::unregister_session(const std::shared_ptr<SessionHandle>& h) {
  std::lock_guard lock(registry_mutex_);
  registry_.erase(h);
}

void ServerContext::wake_idle_sessions() {
  std::lock_guard lock(registry_mutex_);
  for (const auto& h : registry_) {
    asio::post(h->strand, [h] {
      if (h->cancel_if_idle) {
        h->cancel_if_idle();
      }
    });
  }
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, Listener l, ServerContext& ctx) {
  auto& connections = l == Listener::device ? ctx.device_connections : ctx.admin_connections;
  while (true) {
    auto [ec, socket] =
        co_await acceptor.async_accept(asio::make_strand(acceptor.get_executor()), kNoThrow);
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
    ++connections;
    ++ctx.sessions;
    auto executor = socket.get_executor();
    asio::co_spawn(executor, run_session(std::move(socket), l, ctx),
                   [&ctx, &connections](std::exception_ptr e) {
                     --connections;
                     if (--ctx.sessions == 0 && ctx.draining && ctx.on_drained) {
                       ctx.on_drained();
                     }
                     if (e) {
                       // Sessions report failures as values; an exception here is a bug, and
                       // it must not take the server down with it.
                       try {
                         std::rethrow_exception(e);
                       } catch (const std::exception& ex) {
                         spdlog::error("session_exception error={}", log_value(ex.what()));
                       }
                     }
                   });
  }
}

}  // namespace fwdepot::server
