// SPDX-License-Identifier: Apache-2.0
// The server's TLS stream against Asio's client-side ssl::stream, over loopback with the
// server's real TLS contexts and certificates from our PKI.
#include "https/tls_stream.hpp"
#include "https/tls.hpp"

#include "fwdepot/certs/pki.hpp"
#include "fwdepot/core/keys.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

namespace fwdepot::server {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using boost::system::error_code;
using namespace std::chrono_literals;
using Client = ssl::stream<tcp::socket>;
using testing::TempDir;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

std::vector<char> pattern(std::size_t n, unsigned seed) {
  std::vector<char> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i] = static_cast<char>((i * 131 + seed) % 251);
  }
  return v;
}

asio::awaitable<error_code> client_shutdown(Client& client) {
  auto [ec] = co_await client.async_shutdown(kNoThrow);
  co_return ec;
}

// Expects the peer's close_notify, then answers it.
asio::awaitable<error_code> read_eof_then_shutdown(TlsStream& server) {
  std::array<char, 16> buf{};
  auto [ec, n] = co_await server.async_read_some(asio::buffer(buf), kNoThrow);
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
  auto [shutdown_ec] = co_await server.async_shutdown(kNoThrow);
  co_return shutdown_ec;
}

// Read-ahead takes the peer's close_notify off the socket with the byte before it: a shutdown
// that then only waited for the socket would wait until its deadline.
asio::awaitable<error_code> read_byte_then_shutdown(TlsStream& server) {
  std::array<char, 1> buf{};
  co_await asio::async_read(server, asio::buffer(buf), asio::use_awaitable);
  server.expires_after(3s);
  auto [ec] = co_await server.async_shutdown(kNoThrow);
  co_return ec;
}

class TlsStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::int64_t now = std::time(nullptr);
    auto ca = certs::CertificateAuthority::create("test CA", now - 60, 1).value();
    auto server_key = PrivateKey::generate(KeyType::ecdsa_p256).value();
    const std::vector<std::string> ips{"127.0.0.1"};
    auto server_cert = ca.issue_server(server_key.public_key(), {}, ips, now - 60, 1).value();
    auto device_key = PrivateKey::generate(KeyType::ecdsa_p256).value();
    auto device_cert = ca.issue_device(device_key.public_key(), "dev-1", "m1", now - 60, 1).value();
    const auto crl_path = dir_ / "crl.pem";
    std::ofstream(crl_path) << ca.make_crl({}, 1, now - 60, 1).value().to_pem();
    TlsMaterial material;
    material.server_cert_pem = server_cert.to_pem();
    material.server_key_pem = server_key.to_pem().value();
    material.ca_pem = ca.certificate().to_pem();
    tls_ = ServerTls::create(material, crl_path).value();

    client_ctx_.set_verify_mode(ssl::verify_peer);
    client_ctx_.add_certificate_authority(asio::buffer(material.ca_pem));
    const std::string cert_pem = device_cert.to_pem();
    const std::string key_pem = device_key.to_pem().value();
    client_ctx_.use_certificate(asio::buffer(cert_pem), ssl::context::pem);
    client_ctx_.use_private_key(asio::buffer(key_pem), ssl::context::pem);
  }

  // Runs `test` to its end, within a bound: a stream that hangs fails the test, not the suite.
  template <class F>
  void run(F test) {
    bool finished = false;
    asio::co_spawn(io_, test(), [&](std::exception_ptr e) {
      finished = true;
      if (e) {
        std::rethrow_exception(e);
      }
    });
    io_.run_for(20s);
    EXPECT_TRUE(finished) << "the test did not finish within 20 s";
  }

  struct Pair {
    std::unique_ptr<TlsStream> server;
    std::unique_ptr<Client> client;
  };

  // A client and the server's stream connected over loopback, the handshake done.
  asio::awaitable<Pair> connect(bool small_buffers = false) {
    tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
    auto client = std::make_unique<Client>(io_, client_ctx_);
    auto accepted = acceptor.async_accept(asio::use_awaitable);
    auto connected =
        client->next_layer().async_connect(acceptor.local_endpoint(), asio::use_awaitable);
    tcp::socket socket = co_await (std::move(accepted) && std::move(connected));
    if (small_buffers) {
      // A few KiB in flight at most: a write of megabytes must wait for the socket many times.
      // (The client's receive buffer stays as it is: shrunk below loopback's MSS, it would
      // leave the transfer to TCP's zero-window probes.)
      socket.set_option(asio::socket_base::send_buffer_size(4096));
    }
    auto server = TlsStream::create(std::move(socket), tls_->device()->native_handle()).value();
    auto server_side = server->async_handshake(asio::use_awaitable);
    auto client_side = client->async_handshake(ssl::stream_base::client, asio::use_awaitable);
    co_await (std::move(server_side) && std::move(client_side));
    co_return Pair{std::move(server), std::move(client)};
  }

  TempDir dir_;
  std::unique_ptr<ServerTls> tls_;
  ssl::context client_ctx_{ssl::context::tls_client};
  asio::io_context io_;
};

TEST_F(TlsStreamTest, GatheredAndLargeWritesArriveWholeBothWays) {
  run([&]() -> asio::awaitable<void> {
    auto [server, client] = co_await connect(true);
    // A small head and a large body, as Beast writes a response: gathered into a first record,
    // then written straight from the body.
    const std::string head(300, 'h');
    const auto body = pattern(3 * 1024 * 1024 + 17, 1);
    std::array<asio::const_buffer, 2> response{asio::buffer(head), asio::buffer(body)};
    std::vector<char> received(head.size() + body.size());
    auto write = asio::async_write(*server, response, asio::use_awaitable);
    auto read = asio::async_read(*client, asio::buffer(received), asio::use_awaitable);
    co_await (std::move(write) && std::move(read));
    EXPECT_EQ(std::string(received.data(), head.size()), head);
    EXPECT_TRUE(std::equal(body.begin(), body.end(), received.begin() + head.size()));

    const auto upload = pattern(2 * 1024 * 1024 + 5, 2);
    std::vector<char> got(upload.size());
    auto send = asio::async_write(*client, asio::buffer(upload), asio::use_awaitable);
    auto take = asio::async_read(*server, asio::buffer(got), asio::use_awaitable);
    co_await (std::move(send) && std::move(take));
    EXPECT_EQ(got, upload);
  });
}

TEST_F(TlsStreamTest, TriesTakeWhatIsReadyAndTheAsyncOperationsTheRest) {
  run([&]() -> asio::awaitable<void> {
    auto [server, client] = co_await connect(true);
    std::array<char, 16> buf{};
    error_code ec;
    EXPECT_EQ(server->try_read_some(asio::buffer(buf), ec), 0U);
    EXPECT_EQ(ec, asio::error::would_block);

    // Tries until the socket is full: the client reads nothing yet.
    const std::string head(200, 'h');
    const auto body = pattern(4 * 1024 * 1024, 3);
    std::array<asio::const_buffer, 2> out{asio::buffer(head), asio::buffer(body)};
    std::size_t sent = 0;
    while (true) {
      std::size_t n = server->try_write_some(out, ec);
      if (ec || n == 0) {
        break;
      }
      sent += n;
      for (auto& b : out) {
        const std::size_t k = std::min(n, b.size());
        b += k;
        n -= k;
      }
    }
    EXPECT_EQ(ec, asio::error::would_block) << ec.message();
    EXPECT_GT(sent, 0U);
    EXPECT_LT(sent, head.size() + body.size());
    // The rest, from the bytes the last try offered (OpenSSL may hold a record of them).
    std::vector<char> received(head.size() + body.size());
    auto write = asio::async_write(*server, out, asio::use_awaitable);
    auto read = asio::async_read(*client, asio::buffer(received), asio::use_awaitable);
    co_await (std::move(write) && std::move(read));
    EXPECT_EQ(std::string(received.data(), head.size()), head);
    EXPECT_TRUE(std::equal(body.begin(), body.end(), received.begin() + head.size()));

    co_await asio::async_write(*client, asio::buffer(std::string("x")), asio::use_awaitable);
    co_await server->async_wait_readable(asio::use_awaitable);
    EXPECT_EQ(server->try_read_some(asio::buffer(buf), ec), 1U);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(buf[0], 'x');
  });
}

TEST_F(TlsStreamTest, CompletesOutsideTheInitiatingCall) {
  run([&]() -> asio::awaitable<void> {
    auto [server, client] = co_await connect();
    co_await asio::async_write(*client, asio::buffer(std::string("abcdef")), asio::use_awaitable);
    std::array<char, 3> first{};
    co_await asio::async_read(*server, asio::buffer(first), asio::use_awaitable);
    // The rest of the record is in OpenSSL's buffer already: no wait, yet no inline call.
    std::array<char, 3> rest{};
    bool returned = false;
    bool called_inline = false;
    std::size_t got = 0;
    server->async_read_some(asio::buffer(rest), [&](error_code ec, std::size_t n) {
      called_inline = !returned;
      EXPECT_FALSE(ec) << ec.message();
      got = n;
    });
    returned = true;
    asio::steady_timer settle(io_, 0s);  // lets the posted completion run first
    co_await settle.async_wait(asio::use_awaitable);
    EXPECT_FALSE(called_inline);
    EXPECT_EQ(got, 3U);
    EXPECT_EQ(std::string(rest.data(), rest.size()), "def");
  });
}

TEST_F(TlsStreamTest, WaitReadableSeesBytesOpenSslHoldsAndBytesOnTheSocket) {
  run([&]() -> asio::awaitable<void> {
    auto [server, client] = co_await connect();
    server->expires_after(5s);
    co_await asio::async_write(*client, asio::buffer(std::string("abcdef")), asio::use_awaitable);
    auto [ec] = co_await server->async_wait_readable(kNoThrow);  // on the socket
    EXPECT_FALSE(ec) << ec.message();
    std::array<char, 3> first{};
    co_await asio::async_read(*server, asio::buffer(first), asio::use_awaitable);
    // The socket is drained now; the rest of the record is in OpenSSL's hands.
    std::tie(ec) = co_await server->async_wait_readable(kNoThrow);
    EXPECT_FALSE(ec) << ec.message() << ": a wait for the socket missed buffered bytes";
    std::array<char, 3> rest{};
    co_await asio::async_read(*server, asio::buffer(rest), asio::use_awaitable);
    EXPECT_EQ(std::string(rest.data(), rest.size()), "def");
    server->expires_after(50ms);
    std::tie(ec) = co_await server->async_wait_readable(kNoThrow);  // nothing anywhere
    EXPECT_EQ(ec, boost::beast::error::timeout) << ec.message();
  });
}

TEST_F(TlsStreamTest, ADeadlineEndsAWaitWithTimeout) {
  run([&]() -> asio::awaitable<void> {
    auto [server, client] = co_await connect();
    const auto started = std::chrono::steady_clock::now();
    server->expires_after(50ms);
    std::array<char, 16> buf{};
    auto [ec, n] = co_await server->async_read_some(asio::buffer(buf), kNoThrow);
    EXPECT_EQ(ec, boost::beast::error::timeout) << ec.message();
    EXPECT_GE(std::chrono::steady_clock::now() - started, 50ms);
  });
}

TEST_F(TlsStreamTest, AnEarlierDeadlineAppliesToAWaitInProgress) {
  run([&]() -> asio::awaitable<void> {
    auto [server, client] = co_await connect();
    server->expires_after(60s);
    std::array<char, 16> buf{};
    auto read = server->async_read_some(asio::buffer(buf), kNoThrow);
    asio::steady_timer shorten(io_, 0s);
    shorten.async_wait([&](error_code) { server->expires_after(50ms); });
    auto [ec, n] = co_await std::move(read);
    EXPECT_EQ(ec, boost::beast::error::timeout) << ec.message();
  });
}

TEST_F(TlsStreamTest, ALaterDeadlineReplacesAnEarlierOne) {
  run([&]() -> asio::awaitable<void> {
    auto [server, client] = co_await connect();
    server->expires_after(50ms);
    std::array<char, 16> buf{};
    auto read = server->async_read_some(asio::buffer(buf), kNoThrow);
    // Moved on while the read waits, with the timer armed for the first deadline: when it
    // fires, it must wait for the new one rather than end the read.
    asio::post(io_, [&] { server->expires_after(30s); });
    // The client writes well after the first deadline would have passed.
    asio::steady_timer later(io_, 150ms);
    later.async_wait([&](error_code) {
      asio::async_write(*client, asio::buffer("x", 1), [](error_code, std::size_t) {});
    });
    auto [ec, n] = co_await std::move(read);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(n, 1U);
  });
}

TEST_F(TlsStreamTest, CancelEndsAWaitWithOperationAborted) {
  run([&]() -> asio::awaitable<void> {
    auto [server, client] = co_await connect();
    server->expires_after(30s);
    std::array<char, 16> buf{};
    auto read = server->async_read_some(asio::buffer(buf), kNoThrow);
    asio::post(io_, [&] { server->cancel(); });
    auto [ec, n] = co_await std::move(read);
    EXPECT_EQ(ec, asio::error::operation_aborted) << ec.message();
  });
}

TEST_F(TlsStreamTest, APeerThatClosesWithoutCloseNotifyIsATruncation) {
  run([&]() -> asio::awaitable<void> {
    auto [server, client] = co_await connect();
    // A FIN with no close_notify before it (closing outright would send a reset: the client
    // has not read the server's session tickets).
    client->next_layer().shutdown(tcp::socket::shutdown_send);
    std::array<char, 16> buf{};
    auto [ec, n] = co_await server->async_read_some(asio::buffer(buf), kNoThrow);
    EXPECT_EQ(ec, ssl::error::stream_truncated) << ec.message();
  });
}

TEST_F(TlsStreamTest, CloseNotifyIsTheEndOfTheStreamAndShutdownAnswersIt) {
  run([&]() -> asio::awaitable<void> {
    auto [server, client] = co_await connect();
    server->expires_after(10s);
    auto [client_ec, server_ec] =
        co_await (client_shutdown(*client) && read_eof_then_shutdown(*server));
    EXPECT_FALSE(client_ec) << client_ec.message();
    EXPECT_FALSE(server_ec) << server_ec.message();
  });
}

TEST_F(TlsStreamTest, ShutdownFindsAPeersCloseNotifyAlreadyRead) {
  run([&]() -> asio::awaitable<void> {
    auto [server, client] = co_await connect();
    co_await asio::async_write(*client, asio::buffer(std::string("x")), asio::use_awaitable);
    // The client's close_notify goes out as its shutdown starts, right behind its byte; the
    // client then waits for the server's and keeps its socket open.
    auto [client_ec, server_ec] =
        co_await (client_shutdown(*client) && read_byte_then_shutdown(*server));
    EXPECT_FALSE(client_ec) << client_ec.message();
    EXPECT_FALSE(server_ec) << server_ec.message();
  });
}

// The read takes the reset; the close_notify after it goes into a dead socket. Without
// MSG_NOSIGNAL, that send raises SIGPIPE and the test binary dies of it.
TEST_F(TlsStreamTest, ClosingAResetConnectionRaisesNoSignal) {
  run([&]() -> asio::awaitable<void> {
    auto [server, client] = co_await connect();
    const linger reset{1, 0};
    EXPECT_EQ(::setsockopt(client->next_layer().native_handle(), SOL_SOCKET, SO_LINGER, &reset,
                           sizeof reset),
              0);
    client->next_layer().close();
    server->expires_after(10s);
    std::array<char, 16> buf{};
    auto [ec, n] = co_await server->async_read_some(asio::buffer(buf), kNoThrow);
    EXPECT_EQ(ec, asio::error::connection_reset) << ec.message();
    // The session's close after the read failed: the close_notify goes into a dead socket.
    auto [shutdown_ec] = co_await server->async_shutdown(kNoThrow);
    EXPECT_TRUE(shutdown_ec) << "a close_notify into a reset connection went out";
  });
}

}  // namespace
}  // namespace fwdepot::server
