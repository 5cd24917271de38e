// SPDX-License-Identifier: Apache-2.0
// The server's TLS stream: OpenSSL on the connection's own descriptor, with Asio only waiting
// for readiness. Include it only where a session is built (https/session.cpp, its test).
#pragma once

#include "fwdepot/core/error.hpp"
#include "fwdepot/core/openssl.hpp"

#include <openssl/ssl.h>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

namespace fwdepot::server {

/// An allocator for the operation that waits as long as a connection idles: its wait for a
/// next request. Asio takes a handler's operation from a small cache of freed blocks per
/// thread, and reuses a block of any larger size: such a wait then holds, for minutes, a block
/// sized for whatever was freed last (the handshake's operations). With this allocator the
/// operation gets a block of its own size, for one malloc per wait instead of a cache hit.
template <class T>
struct ExactSizeAllocator {
  using value_type = T;
  ExactSizeAllocator() = default;
  template <class U>
  ExactSizeAllocator(const ExactSizeAllocator<U>& /*other*/) noexcept {}  // NOLINT: rebinding
  T* allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
  template <class U>
  bool operator==(const ExactSizeAllocator<U>& /*other*/) const noexcept {
    return true;
  }
};

/// A server-side TLS connection for Beast's HTTP algorithms (an AsyncReadStream and
/// AsyncWriteStream) with beast::tcp_stream's timeouts.
///
/// Why not asio::ssl::stream: it runs OpenSSL against a BIO pair and copies every record
/// through four 17 KiB buffers that live as long as the connection, and the read that waits for
/// a next request keeps OpenSSL's record buffer too. Here OpenSSL reads and writes the socket
/// itself (a non-blocking descriptor, through send(2) with MSG_NOSIGNAL and recv(2)); when it
/// would block, the operation waits for readiness with `async_wait` and calls OpenSSL again. A
/// connection waiting for a next request holds no buffer at all (SSL_MODE_RELEASE_BUFFERS), and
/// each record is encrypted once and written once.
///
/// Operations complete through their handler's associated executor, never inside the
/// initiating call. One read and one write may be outstanding at a time, as with any Asio
/// stream; the handshake and the shutdown take both directions. Unlike a socket, the stream
/// must outlive its pending operations (they finish on it): whoever owns the stream owns their
/// handlers, as the server's connections do.
class TlsStream {
 public:
  using error_code = boost::system::error_code;
  using executor_type = boost::asio::ip::tcp::socket::executor_type;
  using clock = std::chrono::steady_clock;

  /// Takes the connected socket and starts a server-side connection with `ctx`'s settings (the
  /// SSL keeps `ctx` alive). Errors: OpenSSL cannot create the connection (out of memory), or
  /// the socket cannot be made non-blocking.
  [[nodiscard]] static result<std::unique_ptr<TlsStream>> create(
      boost::asio::ip::tcp::socket socket, SSL_CTX* ctx);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  executor_type get_executor() { return socket_.get_executor(); }
  SSL* native_handle() { return ssl_.get(); }

  /// Every wait for the socket from now on ends with beast::error::timeout once `d` has passed,
  /// including one already in progress, until the next call. An operation that needs no wait
  /// completes even past the deadline.
  void expires_after(clock::duration d);
  /// No deadline from now on, and no armed timer: a wait may last indefinitely (someone else
  /// keeps time, and cancels it).
  void expires_never();
  /// Ends every wait in progress with operation_aborted (or timeout, past the deadline).
  void cancel();

  /// Completes with what OpenSSL read: at least one byte, or an error. A peer that closed
  /// without close_notify is asio::ssl::error::stream_truncated; one that sent it, eof.
  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    const boost::asio::mutable_buffer b = first_nonempty(buffers);
    return compose<void(error_code, std::size_t)>(
        std::forward<Token>(token), [b](TlsStream& s) { return s.read_step(b.data(), b.size()); });
  }

  /// Reads what OpenSSL can return without waiting for the socket: at least one byte, or
  /// asio::error::would_block, or an error as async_read_some reports it. After
  /// async_wait_readable, the bytes are usually there already.
  std::size_t try_read_some(boost::asio::mutable_buffer b, error_code& ec);

  /// Writes what OpenSSL can send without waiting for the socket: some of `buffers` (as
  /// async_write_some would gather them), or asio::error::would_block, or an error. After
  /// would_block, the next write must offer the same bytes again (OpenSSL may hold part of
  /// them in a record it has not sent yet): async_write_some with the same buffers does.
  template <class ConstBuffers>
  std::size_t try_write_some(const ConstBuffers& buffers, error_code& ec) {
    // A small answer in pieces (a head and a body) is gathered here on the stack: nothing of
    // it has to outlive this call (OpenSSL accepts the bytes again from elsewhere).
    constexpr std::size_t kOnStack = 4096;
    const Step step = [&] {
      if (boost::asio::buffer_size(buffers) <= kOnStack) {
        char gathered[kOnStack];
        const std::size_t n = boost::asio::buffer_copy(boost::asio::buffer(gathered), buffers);
        return write_step(gathered, n);
      }
      return Writer(buffers)(*this);
    }();
    ec = step.want == Want::nothing ? step.ec : boost::asio::error::would_block;
    return step.bytes;
  }

  /// Writes some of `buffers`: small leading pieces (a response head, a small body) are gathered
  /// into one record, so that a small answer is one record and one send(2).
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return compose<void(error_code, std::size_t)>(std::forward<Token>(token), Writer(buffers));
  }

  /// The server side of the handshake. Errors carry the SSL category (see handshake failure
  /// reasons in session.cpp) or the socket's.
  template <class Token>
  auto async_handshake(Token&& token) {
    return compose<void(error_code)>(std::forward<Token>(token),
                                     [](TlsStream& s) { return s.handshake_step(); });
  }

  /// Completes when a read would find something: bytes OpenSSL holds already, or bytes (or
  /// the end) on the socket. A connection waiting here holds no TLS buffer, where a pending
  /// read would hold OpenSSL's record buffer for as long as the peer stays quiet. It is also
  /// the lightest wait there is (no composed operation, no work counted on the handler's
  /// executor while waiting): meant for connections parked between requests, where the
  /// handler's executor is the stream's.
  template <class Token>
  auto async_wait_readable(Token&& token) {
    return boost::asio::async_initiate<Token, void(error_code)>(
        [this](auto handler) { start_wait_readable(std::move(handler)); }, token);
  }

  /// Sends close_notify and waits (within the deadline) for the peer's.
  template <class Token>
  auto async_shutdown(Token&& token) {
    return compose<void(error_code)>(std::forward<Token>(token),
                                     [](TlsStream& s) { return s.shutdown_step(); });
  }

 private:
  enum class Want { nothing, read, write };
  // One call into OpenSSL: done (with an error or a byte count), or wanting the socket ready.
  struct Step {
    Want want = Want::nothing;
    error_code ec;
    std::size_t bytes = 0;
  };
  static constexpr std::size_t kRecordBytes = 16 * 1024;

  TlsStream(boost::asio::ip::tcp::socket socket, openssl::SslPtr ssl);

  Step read_step(void* data, std::size_t size);
  Step write_step(const void* data, std::size_t size);
  Step handshake_step();
  Step shutdown_step();
  // SSL_read_ex or SSL_write_ex.
  template <class Bytes>
  Step transfer(int (*call)(SSL*, Bytes, std::size_t, std::size_t*), Bytes data, std::size_t size);
  // Translates the result of an SSL_* call that did not succeed.
  Step failed(int ret);
  // Makes sure the deadline timer fires by deadline_.
  void arm_timer();
  // The error a wait for the socket completed with, as the operation reports it.
  [[nodiscard]] error_code wait_result(const error_code& ec) const;

  template <class Handler>
  void start_wait_readable(Handler handler) {
    if (SSL_has_pending(ssl_.get()) == 1) {
      auto ex = boost::asio::get_associated_executor(handler, socket_.get_executor());
      boost::asio::post(ex, [h = std::move(handler)]() mutable { std::move(h)(error_code{}); });
      return;
    }
    arm_timer();
    socket_.async_wait(boost::asio::socket_base::wait_read,
                       ReadableWait<Handler>{this, std::move(handler)});
  }

  // The socket wait's handler. Its allocator (a nested allocator_type, not bind_allocator,
  // whose wrapper would make the operation carry a second executor) takes the operation's
  // block at its own size: the wait lasts as long as the connection idles.
  template <class Handler>
  struct ReadableWait {
    using allocator_type = ExactSizeAllocator<void>;
    allocator_type get_allocator() const noexcept { return {}; }
    void operator()(const error_code& ec) {
      const error_code result = ec ? stream->wait_result(ec) : ec;
      auto ex = boost::asio::get_associated_executor(handler, stream->socket_.get_executor());
      boost::asio::dispatch(ex,
                            [h = std::move(handler), result]() mutable { std::move(h)(result); });
    }
    TlsStream* stream;
    Handler handler;
  };

  template <class Buffers>
  static boost::asio::mutable_buffer first_nonempty(const Buffers& buffers) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      if (boost::asio::mutable_buffer b(*it); b.size() > 0) {
        return b;
      }
    }
    return {};
  }

  // A write's bytes, fixed at its start (OpenSSL retries a write with the same bytes): the
  // first buffer itself, or the leading buffers gathered into one record.
  class Writer {
   public:
    template <class ConstBuffers>
    explicit Writer(const ConstBuffers& buffers) {
      std::size_t total = 0;
      boost::asio::const_buffer first;
      for (auto it = boost::asio::buffer_sequence_begin(buffers);
           it != boost::asio::buffer_sequence_end(buffers); ++it) {
        boost::asio::const_buffer b(*it);
        if (first.size() == 0) {
          first = b;
        }
        total += b.size();
      }
      if (first.size() >= kRecordBytes || total == first.size()) {
        data_ = first.data();
        size_ = first.size();
        return;
      }
      size_ = std::min(total, kRecordBytes);
      gathered_ = std::make_unique_for_overwrite<char[]>(size_);
      boost::asio::buffer_copy(boost::asio::buffer(gathered_.get(), size_), buffers);
      data_ = gathered_.get();
    }
    Step operator()(TlsStream& s) const { return s.write_step(data_, size_); }

   private:
    std::unique_ptr<char[]> gathered_;  // moves with the operation; its bytes stay put
    const void* data_ = nullptr;
    std::size_t size_ = 0;
  };

  // Runs steps until one is done, waiting for the socket in between.
  template <class StepFn, bool kWithBytes>
  class Op {
   public:
    Op(TlsStream& s, StepFn step) : s_(s), step_(std::move(step)) {}

    template <class Self>
    void operator()(Self& self, error_code wait_ec = {}) {
      if (state_ == State::done) {  // the completion posted below
        finish(self, done_);
        return;
      }
      if (state_ == State::waiting && wait_ec) {
        finish(self, Step{Want::nothing, s_.wait_result(wait_ec), 0});
        return;
      }
      const bool initiating = state_ == State::initiating;
      Step step = step_(s_);
      if (step.want != Want::nothing) {
        state_ = State::waiting;
        s_.arm_timer();
        s_.socket_.async_wait(step.want == Want::read ? boost::asio::socket_base::wait_read
                                                      : boost::asio::socket_base::wait_write,
                              std::move(self));
        return;
      }
      if (initiating) {
        // Never from inside the initiating call: Beast's and Asio's composed operations count
        // on it (and their stacks would grow with every chunk that needs no wait).
        state_ = State::done;
        done_ = step;
        boost::asio::post(std::move(self));
        return;
      }
      finish(self, step);
    }

   private:
    template <class Self>
    static void finish(Self& self, const Step& step) {
      if constexpr (kWithBytes) {
        self.complete(step.ec, step.bytes);
      } else {
        self.complete(step.ec);
      }
    }

    enum class State { initiating, waiting, done };
    TlsStream& s_;
    StepFn step_;
    State state_ = State::initiating;
    Step done_;
  };

  template <class Signature, class Token, class StepFn>
  auto compose(Token&& token, StepFn step) {
    return boost::asio::async_compose<Token, Signature>(
        Op<StepFn, std::is_same_v<Signature, void(error_code, std::size_t)>>(*this,
                                                                             std::move(step)),
        token, socket_);
  }

  boost::asio::ip::tcp::socket socket_;
  openssl::SslPtr ssl_;
  boost::asio::steady_timer timer_;
  clock::time_point deadline_ = clock::time_point::max();
  bool timer_armed_ = false;
  std::uint64_t timer_generation_ = 0;
  // Held by the timer's handler only weakly: a handler that fired just before the stream went
  // away must not touch it.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace fwdepot::server
