// SPDX-License-Identifier: Apache-2.0
// The HTTPS transport: Beast over OpenSSL, one connection per exchange, driven to completion on
// a private io_context so that every step runs under a deadline. TLS sessions are kept per
// origin, so the download after a check-in resumes the check-in's session.
#include "fwdepot/client/error.hpp"
#include "tls.hpp"
#include "transport.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <charconv>
#include <map>

namespace fwdepot::client {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Stream = beast::ssl_stream<beast::tcp_stream>;
using boost::system::error_code;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxAnswerBytes = 1024 * 1024;
constexpr std::size_t kChunkBytes = 64 * 1024;

struct Target {
  std::string url;
  std::string host;
  std::string port;
  std::string path;  // origin-form, query included
};

result<Target> parse_target(const std::string& url) {
  auto u = boost::urls::parse_absolute_uri(url);
  if (!u || u->scheme() != "https" || u->host().empty()) {
    return Error(error::invalid_uri, "not an https URL: " + url);
  }
  Target t;
  t.url = url;
  t.host = u->host_address();  // IPv6 without brackets
  t.port = u->has_port() ? std::string(u->port()) : "443";
  t.path = u->encoded_path().empty() ? "/" : std::string(u->encoded_path());
  if (u->has_query()) {
    t.path += "?" + std::string(u->encoded_query());
  }
  return t;
}

Error net_error(const error_code& ec, std::string_view step, const Target& t) {
  const std::string where = std::string(step) + " " + t.host + ":" + t.port + ": ";
  if (ec == beast::error::timeout) {
    return Error(error::timeout, where + "timed out");
  }
  // A TLS alert (in TLS 1.3 the server refuses a client certificate after the client thinks
  // the handshake is done) is a refusal: retrying cannot help. A connection cut without
  // close_notify (stream_truncated) is a network failure like any other.
  if (ec.category() == asio::error::get_ssl_category()) {
    return Error(error::tls_failed, where + ec.message());
  }
  return Error(error::connection_failed, where + ec.message());
}

// The server's {"error":{"message":...}}, or the status line.
std::string server_message(int status, const std::string& body) {
  std::error_code ec;
  auto v = boost::json::parse(body, ec);
  if (!ec && v.is_object()) {
    if (const auto* e = v.as_object().if_contains("error"); e && e->is_object()) {
      if (const auto* m = e->as_object().if_contains("message"); m && m->is_string()) {
        return "HTTP " + std::to_string(status) + ": " + std::string(m->as_string());
      }
    }
  }
  return "HTTP " + std::to_string(status);
}

Error status_error(int status, const std::string& body) {
  if (status == 412 || status == 416) {
    return Error(error::image_changed, server_message(status, body));
  }
  return Error(status >= 500 ? error::server_error : error::refused, server_message(status, body));
}

// "bytes A-B/SIZE" → A and SIZE.
bool parse_content_range(std::string_view v, std::uint64_t& first, std::uint64_t& total) {
  constexpr std::string_view kUnit = "bytes ";
  if (v.substr(0, kUnit.size()) != kUnit) {
    return false;
  }
  v.remove_prefix(kUnit.size());
  const auto dash = v.find('-');
  const auto slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash) {
    return false;
  }
  auto num = [](std::string_view s, std::uint64_t& out) {
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && ec == std::errc() && p == s.data() + s.size();
  };
  return num(v.substr(0, dash), first) && num(v.substr(slash + 1), total);
}

class HttpsTransport final : public Transport {
 public:
  explicit HttpsTransport(TransportOptions options) : options_(std::move(options)) {}

  result<std::string> checkin(const std::string& url, std::string_view json) override {
    auto target = parse_target(url);
    if (!target) {
      return target.error();
    }
    return run<std::string>(do_checkin(*target, std::string(json)));
  }

  result<void> download(const DownloadRequest& request, DownloadSink& sink) override {
    auto target = parse_target(request.url);
    if (!target) {
      return target.error();
    }
    auto r = run<bool>(do_download(*target, request, sink));
    if (!r) {
      return r.error();
    }
    return {};
  }

  bool last_session_resumed() const override { return resumed_; }

 private:
  // Drives one exchange to completion on the private io_context.
  template <class T>
  result<T> run(asio::awaitable<result<T>> op) {
    std::optional<result<T>> out;
    io_.restart();
    asio::co_spawn(io_, std::move(op), [&out](std::exception_ptr e, result<T> r) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          r = Error(error::connection_failed, std::string("unexpected: ") + ex.what());
        }
      }
      out.emplace(std::move(r));
    });
    io_.run();
    return out ? std::move(*out) : result<T>(Error(error::connection_failed, "no result"));
  }

  struct Connection {
    std::shared_ptr<ssl::context> context;  // outlives the stream that refers to it
    std::unique_ptr<Stream> stream;
  };

  // One context per origin while its configuration stays the same: building one parses the
  // trust store again, and TLS sessions resume only within the context that made them.
  result<std::shared_ptr<ssl::context>> context_for(const Target& t, SecurityConfig& config) {
    auto c = options_.security(t.url);
    if (!c) {
      return c.error();
    }
    config = std::move(*c);
    const std::string origin = t.host + ":" + t.port;
    if (auto it = contexts_.find(origin); it != contexts_.end() && it->second.first == config) {
      return it->second.second;
    }
    auto context = make_tls_context(config);
    if (!context) {
      return context.error();
    }
    sessions_.erase(origin);
    contexts_[origin] = {config, *context};
    return context;
  }

  asio::awaitable<result<Connection>> open(const Target& t) {
    SecurityConfig config;
    auto context = context_for(t, config);
    if (!context) {
      co_return context.error();
    }
    Connection c{*context, std::make_unique<Stream>(io_, **context)};
    SSL* native = c.stream->native_handle();
    if (auto r = prepare_connection(native, config, t.host); !r) {
      co_return r.error();
    }
    const std::string origin = t.host + ":" + t.port;
    if (auto s = sessions_.find(origin); s != sessions_.end()) {
      SSL_set_session(native, s->second.get());
    }
    auto& lowest = beast::get_lowest_layer(*c.stream);
    lowest.expires_after(options_.connect_timeout);
    tcp::resolver resolver(io_);
    auto [rec, endpoints] = co_await resolver.async_resolve(t.host, t.port, kNoThrow);
    if (rec) {
      co_return net_error(rec, "resolve", t);
    }
    auto [cec, endpoint] = co_await lowest.async_connect(endpoints, kNoThrow);
    if (cec) {
      co_return net_error(cec, "connect", t);
    }
    auto [hec] = co_await c.stream->async_handshake(ssl::stream_base::client, kNoThrow);
    if (hec) {
      if (hec == beast::error::timeout) {
        co_return net_error(hec, "TLS handshake", t);
      }
      // (No conditional operator with temporaries in a coroutine: GCC 12 mishandles them.)
      std::string why = hec.message();
      if (const long verify = SSL_get_verify_result(native); verify != X509_V_OK) {
        why = X509_verify_cert_error_string(verify);
      }
      co_return Error(error::tls_failed, "TLS handshake with " + origin + ": " + why);
    }
    if (auto r = check_pinned_key(native, config); !r) {
      co_return r.error();
    }
    resumed_ = SSL_session_reused(native) == 1;
    co_return c;
  }

  // TLS 1.3 tickets arrive after the handshake, so the session is saved once a response has
  // been read.
  void keep_session(const Target& t, Connection& c) {
    if (SSL_SESSION* s = SSL_get1_session(c.stream->native_handle())) {
      if (SSL_SESSION_is_resumable(s) == 1) {
        sessions_[t.host + ":" + t.port] = std::shared_ptr<SSL_SESSION>(s, SSL_SESSION_free);
      } else {
        SSL_SESSION_free(s);
      }
    }
  }

  // A clean TLS close: OpenSSL marks the session of a connection freed without close_notify
  // as not resumable, which would cost the next exchange a full handshake.
  asio::awaitable<void> close(Connection& c) {
    beast::get_lowest_layer(*c.stream).expires_after(std::chrono::seconds(2));
    (void)co_await c.stream->async_shutdown(kNoThrow);
  }

  void set_common(http::request_header<>& h, const Target& t) {
    h.set(http::field::host, t.host.find(':') == std::string::npos ? t.host + ":" + t.port
                                                                   : "[" + t.host + "]:" + t.port);
    h.set(http::field::user_agent, "fwdepot-client/0.1");
    h.set(http::field::connection, "close");
  }

  asio::awaitable<result<std::string>> do_checkin(Target t, std::string json) {
    auto c = co_await open(t);
    if (!c) {
      co_return c.error();
    }
    http::request<http::string_body> req{http::verb::post, t.path, 11};
    set_common(req, t);
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(json);
    req.prepare_payload();
    auto& lowest = beast::get_lowest_layer(*c->stream);
    lowest.expires_after(options_.io_timeout);
    if (auto [ec, n] = co_await http::async_write(*c->stream, req, kNoThrow); ec) {
      co_return net_error(ec, "send", t);
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxAnswerBytes);
    lowest.expires_after(options_.io_timeout);
    if (auto [ec, n] = co_await http::async_read(*c->stream, buffer, parser, kNoThrow); ec) {
      co_return net_error(ec, "receive", t);
    }
    keep_session(t, *c);
    co_await close(*c);
    const int status = static_cast<int>(parser.get().result_int());
    std::string body = std::move(parser.get().body());
    if (status != 200) {
      co_return status_error(status, body);
    }
    co_return body;
  }

  asio::awaitable<result<bool>> do_download(Target t, DownloadRequest request, DownloadSink& sink) {
    auto c = co_await open(t);
    if (!c) {
      co_return c.error();
    }
    http::request<http::empty_body> req{http::verb::get, t.path, 11};
    set_common(req, t);
    if (request.offset > 0) {
      req.set(http::field::range, "bytes=" + std::to_string(request.offset) + "-");
      if (!request.if_range.empty()) {
        req.set(http::field::if_range, request.if_range);
      }
    }
    auto& lowest = beast::get_lowest_layer(*c->stream);
    lowest.expires_after(options_.io_timeout);
    if (auto [ec, n] = co_await http::async_write(*c->stream, req, kNoThrow); ec) {
      co_return net_error(ec, "send", t);
    }
    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    lowest.expires_after(options_.io_timeout);
    if (auto [ec, n] = co_await http::async_read_header(*c->stream, buffer, parser, kNoThrow); ec) {
      co_return net_error(ec, "receive", t);
    }
    keep_session(t, *c);
    const auto& head = parser.get();
    const int status = static_cast<int>(head.result_int());
    const std::string etag(head[http::field::etag]);
    std::uint64_t offset = 0;
    std::uint64_t total = 0;
    if (status == 206) {
      if (!parse_content_range(head[http::field::content_range], offset, total) ||
          offset != request.offset) {
        co_return Error(error::server_error, "a 206 answer without the range asked for");
      }
    } else if (status == 200) {
      if (!parser.content_length()) {
        co_return Error(error::server_error, "a payload without Content-Length");
      }
      total = *parser.content_length();
    } else {
      // An error answer is small; read it for the server's message.
      std::string body;
      std::array<char, 4096> chunk{};
      while (!parser.is_done() && body.size() < kMaxAnswerBytes) {
        parser.get().body().data = chunk.data();
        parser.get().body().size = chunk.size();
        auto [ec, n] = co_await http::async_read(*c->stream, buffer, parser, kNoThrow);
        body.append(chunk.data(), chunk.size() - parser.get().body().size);
        if (ec && ec != http::error::need_buffer) {
          break;
        }
      }
      co_return status_error(status, body);
    }
    if (auto r = sink.begin(offset, total, etag); !r) {
      co_return r.error();
    }
    std::vector<char> chunk(kChunkBytes);
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      lowest.expires_after(options_.io_timeout);
      auto [ec, n] = co_await http::async_read(*c->stream, buffer, parser, kNoThrow);
      const std::size_t got = chunk.size() - parser.get().body().size;
      if (got > 0) {
        if (auto r = sink.data(std::string_view(chunk.data(), got)); !r) {
          co_return r.error();
        }
      }
      if (ec && ec != http::error::need_buffer) {
        co_return net_error(ec, "download", t);  // cut short: the caller resumes
      }
    }
    co_await close(*c);
    co_return true;
  }

  TransportOptions options_;
  asio::io_context io_;
  std::map<std::string, std::pair<SecurityConfig, std::shared_ptr<ssl::context>>> contexts_;
  std::map<std::string, std::shared_ptr<SSL_SESSION>> sessions_;  // by host:port
  bool resumed_ = false;
};

}  // namespace

result<std::unique_ptr<Transport>> make_transport(std::string_view scheme,
                                                  TransportOptions options) {
  if (scheme == "https") {
    return std::unique_ptr<Transport>(std::make_unique<HttpsTransport>(std::move(options)));
  }
  if (scheme == "coaps") {
    return make_coaps_transport(std::move(options));
  }
  return Error(error::unsupported_protocol, "no transport for '" + std::string(scheme) + "'");
}

}  // namespace fwdepot::client
