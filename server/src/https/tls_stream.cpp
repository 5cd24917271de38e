// SPDX-License-Identifier: Apache-2.0
#include "https/tls_stream.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>

#include <cerrno>
#include <cstdint>

namespace fwdepot::server {
namespace {

namespace asio = boost::asio;

// OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE on a connection the peer
// reset; a server must not die of a device hanging up. This one is send(2) with MSG_NOSIGNAL
// and recv(2), and nothing else: the descriptor stays the socket's to close.
int descriptor_of(BIO* bio) {
  return static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio)));
}

bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }

int socket_write(BIO* bio, const char* data, int size) {
  BIO_clear_retry_flags(bio);
  const auto n = ::send(descriptor_of(bio), data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
  if (n < 0 && would_block(errno)) {
    BIO_set_retry_write(bio);
  }
  return static_cast<int>(n);
}

int socket_read(BIO* bio, char* out, int size) {
  BIO_clear_retry_flags(bio);
  const auto n = ::recv(descriptor_of(bio), out, static_cast<std::size_t>(size), 0);
  if (n < 0 && would_block(errno)) {
    BIO_set_retry_read(bio);
  } else if (n == 0) {
    BIO_set_flags(bio, BIO_FLAGS_IN_EOF);  // so that OpenSSL tells a truncation from an error
  }
  return static_cast<int>(n);
}

long socket_ctrl(BIO* bio, int cmd, long /*num*/, void* /*ptr*/) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF:
      return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    default:
      return 0;
  }
}

const BIO_METHOD* socket_method() {
  static const BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "fwdepot socket");
    if (m != nullptr) {
      BIO_meth_set_write(m, socket_write);
      BIO_meth_set_read(m, socket_read);
      BIO_meth_set_ctrl(m, socket_ctrl);
    }
    return m;
  }();
  return method;
}

}  // namespace

result<std::unique_ptr<TlsStream>> TlsStream::create(asio::ip::tcp::socket socket, SSL_CTX* ctx) {
  // OpenSSL calls the descriptor itself, so it must not block at the kernel's level.
  error_code ec;
  socket.native_non_blocking(true, ec);
  if (ec) {
    return Error(ec, "socket cannot be made non-blocking");
  }
  openssl::SslPtr ssl(SSL_new(ctx));
  const BIO_METHOD* method = socket_method();
  BIO* bio = method != nullptr ? BIO_new(method) : nullptr;
  if (!ssl || bio == nullptr) {
    BIO_free(bio);
    ERR_clear_error();
    return Error(core::error::crypto_failure, "cannot create a TLS connection");
  }
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(socket.native_handle())));
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl.get(), bio, bio);  // the SSL owns the BIO now
  SSL_set_accept_state(ssl.get());
  // A read takes whatever has arrived (up to a record buffer) in one recv(2), rather than a
  // record header and then its body in two. A write returns after each record it got out,
  // which is what async_write_some promises, and may be retried from where the bytes moved.
  SSL_set_read_ahead(ssl.get(), 1);
  SSL_set_mode(ssl.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
  return std::unique_ptr<TlsStream>(new TlsStream(std::move(socket), std::move(ssl)));
}

TlsStream::TlsStream(asio::ip::tcp::socket socket, openssl::SslPtr ssl)
    : socket_(std::move(socket)), ssl_(std::move(ssl)), timer_(socket_.get_executor()) {}

TlsStream::~TlsStream() = default;

void TlsStream::expires_after(clock::duration d) {
  deadline_ = clock::now() + d;
  if (timer_armed_ && timer_.expiry() > deadline_) {
    arm_timer();  // a wait in progress must end by the earlier deadline
  }
}

void TlsStream::expires_never() {
  deadline_ = clock::time_point::max();
  if (timer_armed_) {
    timer_armed_ = false;
    ++timer_generation_;  // the cancelled wait's handler finds it stale
    timer_.cancel();
  }
}

void TlsStream::cancel() {
  error_code ignored;
  socket_.cancel(ignored);
}

std::size_t TlsStream::try_read_some(asio::mutable_buffer b, error_code& ec) {
  const Step step = read_step(b.data(), b.size());
  ec = step.want == Want::nothing ? step.ec : asio::error::would_block;
  return step.bytes;
}

TlsStream::Step TlsStream::read_step(void* data, std::size_t size) {
  return transfer(SSL_read_ex, data, size);
}

TlsStream::Step TlsStream::write_step(const void* data, std::size_t size) {
  return transfer(SSL_write_ex, data, size);
}

template <class Bytes>
TlsStream::Step TlsStream::transfer(int (*call)(SSL*, Bytes, std::size_t, std::size_t*), Bytes data,
                                    std::size_t size) {
  if (size == 0) {
    return {};
  }
  ERR_clear_error();
  errno = 0;
  std::size_t n = 0;
  if (call(ssl_.get(), data, size, &n) == 1) {
    return {Want::nothing, {}, n};
  }
  return failed(0);
}

TlsStream::Step TlsStream::handshake_step() {
  ERR_clear_error();
  errno = 0;
  const int ret = SSL_do_handshake(ssl_.get());
  return ret == 1 ? Step{} : failed(ret);
}

TlsStream::Step TlsStream::shutdown_step() {
  ERR_clear_error();
  errno = 0;
  int ret = SSL_shutdown(ssl_.get());
  if (ret == 0) {
    // Ours is out. The peer's may be in OpenSSL's read-ahead already, where no wait for the
    // socket would see it: look before waiting.
    ERR_clear_error();
    errno = 0;
    ret = SSL_shutdown(ssl_.get());
  }
  if (ret == 1) {
    return {};
  }
  if (ret == 0) {
    return {Want::read, {}, 0};  // our close_notify is out; the peer's is still to come
  }
  return failed(ret);
}

TlsStream::Step TlsStream::failed(int ret) {
  const int saved_errno = errno;
  switch (SSL_get_error(ssl_.get(), ret)) {
    case SSL_ERROR_WANT_READ:
      return {Want::read, {}, 0};
    case SSL_ERROR_WANT_WRITE:
      return {Want::write, {}, 0};
    case SSL_ERROR_ZERO_RETURN:
      return {Want::nothing, asio::error::eof, 0};
    case SSL_ERROR_SYSCALL:
      if (const unsigned long e = ERR_get_error(); e != 0) {
        ERR_clear_error();
        return {Want::nothing, error_code(static_cast<int>(e), asio::error::get_ssl_category()), 0};
      }
      if (saved_errno == 0) {
        return {Want::nothing, asio::ssl::error::stream_truncated, 0};
      }
      return {Want::nothing, error_code(saved_errno, boost::system::system_category()), 0};
    default: {
      const unsigned long e = ERR_get_error();
      ERR_clear_error();
      if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
          ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        // The peer closed without close_notify. HTTP's framing says whether what came before
        // was whole, so the request path treats it as the end of the connection.
        return {Want::nothing, asio::ssl::error::stream_truncated, 0};
      }
      if (e == 0) {
        return {Want::nothing, asio::error::fault, 0};
      }
      return {Want::nothing, error_code(static_cast<int>(e), asio::error::get_ssl_category()), 0};
    }
  }
}

void TlsStream::arm_timer() {
  if (deadline_ == clock::time_point::max() || (timer_armed_ && timer_.expiry() <= deadline_)) {
    return;  // no deadline, or the armed timer fires first and then looks again
  }
  timer_.expires_at(deadline_);
  timer_armed_ = true;
  const std::uint64_t generation = ++timer_generation_;
  auto fired = [this, alive = std::weak_ptr<int>(alive_), generation](const error_code& ec) {
    if (alive.expired() || ec || generation != timer_generation_) {
      return;  // the stream is gone, or the timer was set again
    }
    timer_armed_ = false;
    if (clock::now() < deadline_) {
      arm_timer();  // the deadline moved on since the timer was set
      return;
    }
    error_code ignored;
    socket_.cancel(ignored);  // the waits see operation_aborted and report a timeout
  };
  timer_.async_wait(std::move(fired));
}

TlsStream::error_code TlsStream::wait_result(const error_code& ec) const {
  if (ec == asio::error::operation_aborted && clock::now() >= deadline_) {
    return boost::beast::error::timeout;
  }
  return ec;
}

}  // namespace fwdepot::server
