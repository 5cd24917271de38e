// SPDX-License-Identifier: Apache-2.0
#include "https/session.hpp"

#include "fwdepot/certs/pki.hpp"
#include "fwdepot/core/ids.hpp"
#include "log.hpp"
#include "web/assets.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>

#include <charconv>
#include <chrono>
#include <ctime>
#include <set>

namespace fwdepot::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Stream = beast::ssl_stream<beast::tcp_stream>;
using boost::system::error_code;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxHeaderBytes = 8 * 1024;
constexpr std::size_t kMaxJsonBodyBytes = 64 * 1024;
constexpr std::size_t kIoChunkBytes = 64 * 1024;
constexpr std::chrono::seconds kShutdownTimeout{5};
constexpr std::chrono::seconds kLingerTimeout{2};
constexpr std::size_t kLingerBytes = 1024 * 1024;

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

const char* listener_name(Listener l) { return l == Listener::device ? "device" : "admin"; }

// What the per-request log line and the metrics need to know about one exchange.
struct Exchange {
  std::string who = "-";  // device id or admin token name; never a secret
  std::string method;
  std::string route = "unknown";  // a fixed pattern, bounded cardinality
  int status = 0;
  std::uint64_t bytes = 0;
  bool keep_alive = true;
  bool unread_body = false;  // a body no route read: the connection cannot carry another request
};

// The admin listener serves the web UI, so every answer carries the browser protections: no
// inline or foreign scripts, no framing, no referrer leaks.
constexpr const char* kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

void add_common_headers(http::fields& f, Listener l) {
  f.set(http::field::server, "fwdepot");
  f.set(http::field::cache_control, "no-store");
  f.set("X-Content-Type-Options", "nosniff");
  if (l == Listener::admin) {
    f.set(http::field::strict_transport_security, "max-age=31536000");
    f.set("Content-Security-Policy", kContentSecurityPolicy);
    f.set("X-Frame-Options", "DENY");
    f.set("Referrer-Policy", "no-referrer");
    f.set("Cross-Origin-Opener-Policy", "same-origin");
  }
}

asio::awaitable<error_code> write_response(Stream& stream, Listener l, Exchange& ex, int status,
                                           std::string body,
                                           std::string_view content_type = "application/json") {
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  add_common_headers(res, l);
  if (!body.empty() || status != 204) {
    res.set(http::field::content_type, content_type);
  }
  if (status == 401) {
    res.set(http::field::www_authenticate, "Bearer");
  }
  res.keep_alive(ex.keep_alive && !ex.unread_body);
  res.body() = std::move(body);
  res.prepare_payload();
  ex.status = status;
  ex.bytes = res.body().size();
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
  auto [ec, n] = co_await http::async_write(stream, res, kNoThrow);
  co_return ec;
}

asio::awaitable<error_code> write_api(Stream& stream, Listener l, Exchange& ex,
                                      ApiResponse response) {
  co_return co_await write_response(stream, l, ex, response.status, std::move(response.body));
}

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
  if (ec == asio::error::eof || ec == asio::error::connection_reset) {
    return "peer closed";
  }
  return "other";
}

std::optional<certs::DeviceIdentity> peer_identity(Stream& stream) {
  return device_identity(openssl::X509Ptr(SSL_get1_peer_certificate(stream.native_handle())));
}

// --- downloads --------------------------------------------------------------------------------

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
};

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

enum class RangeResult { none, ok, unsatisfiable };

// One "bytes=a-b", "bytes=a-" or "bytes=-n". Anything else (several ranges, other units, bad
// syntax) is ignored and the whole image sent, as RFC 9110 section 14.2 allows.
RangeResult parse_range(std::string_view header, std::uint64_t size, ByteRange& out) {
  constexpr std::string_view kUnit = "bytes=";
  if (header.substr(0, kUnit.size()) != kUnit || header.find(',') != std::string_view::npos) {
    return RangeResult::none;
  }
  const std::string_view spec = header.substr(kUnit.size());
  const auto dash = spec.find('-');
  if (dash == std::string_view::npos) {
    return RangeResult::none;
  }
  const std::string_view a = spec.substr(0, dash);
  const std::string_view b = spec.substr(dash + 1);
  if (a.empty()) {
    auto n = parse_u64(b);
    if (!n) {
      return RangeResult::none;
    }
    if (*n == 0 || size == 0) {
      return RangeResult::unsatisfiable;
    }
    out = {size - std::min(*n, size), size - 1};
    return RangeResult::ok;
  }
  auto first = parse_u64(a);
  auto last = b.empty() ? first : parse_u64(b);  // "a-" runs to the end
  if (!first || !last || *last < *first) {
    return RangeResult::none;
  }
  if (*first >= size) {
    return RangeResult::unsatisfiable;
  }
  if (b.empty()) {
    *last = size - 1;
  }
  out = {*first, std::min(*last, size - 1)};
  return RangeResult::ok;
}

bool etag_matches(std::string_view list, std::string_view etag) {
  if (list == "*") {
    return true;
  }
  std::size_t pos = 0;
  while (pos < list.size()) {
    auto comma = list.find(',', pos);
    std::string_view item = list.substr(pos, comma == std::string_view::npos ? comma : comma - pos);
    while (!item.empty() && item.front() == ' ') {
      item.remove_prefix(1);
    }
    while (!item.empty() && item.back() == ' ') {
      item.remove_suffix(1);
    }
    if (item == etag) {  // strong comparison: a weak W/ tag never matches
      return true;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    pos = comma + 1;
  }
  return false;
}

asio::awaitable<error_code> serve_download(Stream& stream, ServerContext& ctx, Exchange& ex,
                                           const certs::DeviceIdentity& device,
                                           const http::request_header<>& req,
                                           std::int64_t image_id) {
  const Listener l = Listener::device;
  auto image = ctx.devices.authorize_download(device, image_id);
  if (!image) {
    co_return co_await write_api(stream, l, ex, api_error(image.error()));
  }
  auto reader = ctx.backend.blobs().open_blob(image->sha256);
  if (!reader) {
    spdlog::error("blob_unreadable image={} error={}", image_id,
                  log_value(reader.error().message()));
    co_return co_await write_api(stream, l, ex, api_error(500, "internal", "image unavailable"));
  }
  const std::uint64_t size = (*reader)->size();
  const std::string etag = "\"" + hex_encode(image->sha256) + "\"";

  if (auto it = req.find(http::field::if_match); it != req.end()) {
    if (!etag_matches(it->value(), etag)) {
      co_return co_await write_api(stream, l, ex,
                                   api_error(412, "precondition_failed", "the image changed"));
    }
  }
  ByteRange range{0, size == 0 ? 0 : size - 1};
  RangeResult ranged = RangeResult::none;
  if (auto it = req.find(http::field::range); it != req.end()) {
    auto if_range = req.find(http::field::if_range);
    // If-Range with another validator: the image changed, so send all of it.
    if (if_range == req.end() || if_range->value() == etag) {
      ranged = parse_range(it->value(), size, range);
    }
  }
  http::response<http::buffer_body> res;
  res.version(11);
  add_common_headers(res, l);
  res.set(http::field::etag, etag);
  res.set(http::field::accept_ranges, "bytes");
  res.keep_alive(ex.keep_alive && !ex.unread_body);
  if (ranged == RangeResult::unsatisfiable) {
    res.result(http::status::range_not_satisfiable);
    res.set(http::field::content_range, "bytes */" + std::to_string(size));
    res.content_length(0);
    res.body().data = nullptr;
    res.body().more = false;
    ex.status = 416;
    auto [ec, n] = co_await http::async_write(stream, res, kNoThrow);
    co_return ec;
  }
  const std::uint64_t length = size == 0 ? 0 : range.last - range.first + 1;
  res.result(ranged == RangeResult::ok ? http::status::partial_content : http::status::ok);
  res.set(http::field::content_type, "application/octet-stream");
  if (ranged == RangeResult::ok) {
    res.set(http::field::content_range, "bytes " + std::to_string(range.first) + "-" +
                                            std::to_string(range.last) + "/" +
                                            std::to_string(size));
  }
  res.content_length(length);
  ex.status = static_cast<int>(res.result_int());
  const bool head = req.method() == http::verb::head;
  res.body().data = nullptr;
  res.body().more = !head && length > 0;

  http::response_serializer<http::buffer_body> sr{res};
  auto& lowest = beast::get_lowest_layer(stream);
  lowest.expires_after(ctx.options.body_timeout);
  if (auto [ec, n] = co_await http::async_write_header(stream, sr, kNoThrow); ec) {
    co_return ec;
  }
  if (head || length == 0) {
    co_return error_code{};
  }
  ctx.metrics.download_started(ranged == RangeResult::ok);
  std::vector<char> chunk(kIoChunkBytes);
  std::uint64_t offset = range.first;
  std::uint64_t remaining = length;
  while (remaining > 0) {
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(remaining, chunk.size()));
    auto got = (*reader)->read_at(offset, std::span<char>(chunk.data(), want));
    if (!got || *got == 0) {
      // The blob shrank under us: the response is already promised, so all we can do is cut
      // the connection, which the device treats as a lost connection and resumes.
      spdlog::error("blob_short_read image={} offset={}", image_id, offset);
      co_return make_error_code(beast::errc::io_error);
    }
    res.body().data = chunk.data();
    res.body().size = *got;
    res.body().more = remaining > *got;
    lowest.expires_after(ctx.options.body_timeout);
    auto [ec, n] = co_await http::async_write(stream, sr, kNoThrow);
    if (ec && ec != http::error::need_buffer) {
      co_return ec;
    }
    offset += *got;
    remaining -= *got;
    ex.bytes += *got;
    ctx.metrics.bytes_served(*got);
  }
  res.body().data = nullptr;
  res.body().more = false;
  auto [ec, n] = co_await http::async_write(stream, sr, kNoThrow);
  co_return ec == http::error::need_buffer ? error_code{} : ec;
}

// --- request bodies ---------------------------------------------------------------------------

// Reads a JSON-sized body. Without a body to hand on, the error ends the session; a body over
// the limit has been answered with 413 by then.
asio::awaitable<std::pair<error_code, std::optional<std::string>>> read_small_body(
    Stream& stream, beast::flat_buffer& buffer, http::request_parser<http::empty_body>& head,
    Listener l, Exchange& ex, std::chrono::milliseconds timeout) {
  ex.unread_body = false;
  http::request_parser<http::string_body> parser(std::move(head));
  parser.body_limit(kMaxJsonBodyBytes);
  beast::get_lowest_layer(stream).expires_after(timeout);
  auto [ec, n] = co_await http::async_read(stream, buffer, parser, kNoThrow);
  if (ec == http::error::body_limit) {
    ex.keep_alive = false;
    ApiResponse refusal = api_error(413, "too_large", "request body over 64 KiB");
    ec = co_await write_api(stream, l, ex, std::move(refusal));
    co_return std::pair{ec ? ec : make_error_code(http::error::body_limit), std::nullopt};
  }
  if (ec) {
    co_return std::pair{ec, std::nullopt};
  }
  co_return std::pair{ec, std::optional<std::string>(std::move(parser.get().body()))};
}

asio::awaitable<error_code> handle_upload(Stream& stream, beast::flat_buffer& buffer,
                                          http::request_parser<http::empty_body>& head,
                                          ServerContext& ctx, Exchange& ex) {
  const Listener l = Listener::admin;
  const auto& req = head.get();
  std::optional<std::uint64_t> length;
  if (auto cl = head.content_length()) {
    length = *cl;
  }
  auto upload = ctx.admin.begin_upload(req[http::field::content_type], length);
  if (!upload) {
    co_return co_await write_api(stream, l, ex, api_error(upload.error()));
  }
  if (beast::iequals(req[http::field::expect], "100-continue")) {
    http::response<http::empty_body> cont{http::status::continue_, 11};
    auto [ec, n] = co_await http::async_write(stream, cont, kNoThrow);
    if (ec) {
      co_return ec;
    }
  }
  ex.unread_body = false;
  http::request_parser<http::buffer_body> parser(std::move(head));
  parser.body_limit(boost::none);  // the upload enforces the configured limit itself
  std::vector<char> chunk(kIoChunkBytes);
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    beast::get_lowest_layer(stream).expires_after(ctx.options.body_timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, kNoThrow);
    if (ec && ec != http::error::need_buffer) {
      ex.keep_alive = false;
      // A body cut short leaves nothing behind: the upload's temporary blob dies with it.
      (void)co_await write_api(stream, l, ex,
                               api_error(400, "bad_request", "request body incomplete"));
      co_return ec;
    }
    const std::size_t got = chunk.size() - parser.get().body().size;
    if (got > 0) {
      if (auto r = (*upload)->feed(std::string_view(chunk.data(), got)); !r) {
        ex.keep_alive = false;
        co_return co_await write_api(stream, l, ex, api_error(r.error()));
      }
    }
  }
  co_return co_await write_api(stream, l, ex, (*upload)->finish(unix_now()));
}

// --- routing ----------------------------------------------------------------------------------

std::string origin_of(const http::request_header<>& req, const char* scheme) {
  const auto host = req[http::field::host];
  if (host.empty() || host.find_first_of("/\\@ ") != std::string_view::npos) {
    return {};
  }
  return std::string(scheme) + "://" + std::string(host);
}

// The CoAPS origin on the host the device reached over HTTPS: "coaps://HOST:COAPS_PORT".
std::string coaps_origin_of(std::string_view https_origin, std::uint16_t coaps_port) {
  constexpr std::string_view kScheme = "https://";
  if (coaps_port == 0 || !https_origin.starts_with(kScheme)) {
    return {};
  }
  std::string_view host = https_origin.substr(kScheme.size());
  const auto bracket = host.rfind(']');
  const auto colon = host.rfind(':');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    host = host.substr(0, colon);
  }
  return "coaps://" + std::string(host) + ":" + std::to_string(coaps_port);
}

asio::awaitable<error_code> route_device(Stream& stream, beast::flat_buffer& buffer,
                                         http::request_parser<http::empty_body>& head,
                                         ServerContext& ctx, Exchange& ex,
                                         const certs::DeviceIdentity& device,
                                         const std::vector<std::string>& segments) {
  const Listener l = Listener::device;
  const auto& req = head.get();
  const auto method = req.method();
  const bool api = segments.size() >= 3 && segments[0] == "api" && segments[1] == "v1" &&
                   segments[2] == "device";
  if (api && segments.size() == 4 && segments[3] == "checkin") {
    ex.route = "/api/v1/device/checkin";
    if (method != http::verb::post) {
      co_return co_await write_api(stream, l, ex, api_error(405, "method_not_allowed", "use POST"));
    }
    const std::string origin = origin_of(req, "https");  // `head` is consumed by the body read
    const std::string coaps = coaps_origin_of(origin, ctx.coaps_port);
    auto [ec, body] =
        co_await read_small_body(stream, buffer, head, l, ex, ctx.options.body_timeout);
    if (!body) {
      co_return ec;
    }
    co_return co_await write_api(stream, l, ex,
                                 ctx.devices.checkin(device, *body, origin, coaps, unix_now()));
  }
  if (api && segments.size() == 5 && segments[3] == "images") {
    ex.route = "/api/v1/device/images/{id}";
    if (method != http::verb::get && method != http::verb::head) {
      co_return co_await write_api(stream, l, ex,
                                   api_error(405, "method_not_allowed", "use GET or HEAD"));
    }
    std::int64_t id = 0;
    const auto& s = segments[4];
    const auto [p, err] = std::from_chars(s.data(), s.data() + s.size(), id);
    if (err != std::errc() || p != s.data() + s.size() || id <= 0) {
      co_return co_await write_api(stream, l, ex, api_error(404, "not_found", "no such image"));
    }
    co_return co_await serve_download(stream, ctx, ex, device, req, id);
  }
  co_return co_await write_api(stream, l, ex, api_error(404, "not_found", "no such resource"));
}

// The route label for metrics and logs, from a closed set: ids become {id}, and a path that is
// not a known route is "unknown", so that no client can grow a metric series per request.
std::string admin_route_pattern(const std::vector<std::string>& seg) {
  static const std::set<std::string, std::less<>> kCollections = {"images", "devices",
                                                                  "deployments", "stats"};
  if (seg.size() < 3 || seg.size() > 5 || !kCollections.contains(seg[2])) {
    return "unknown";
  }
  std::string out = "/api/v1/" + seg[2];
  if (seg.size() >= 4) {
    out += "/{id}";
  }
  if (seg.size() == 5) {
    if (seg[4] != "events" && seg[4] != "psk") {
      return "unknown";
    }
    out += "/" + seg[4];
  }
  return out;
}

asio::awaitable<error_code> route_admin(Stream& stream, beast::flat_buffer& buffer,
                                        http::request_parser<http::empty_body>& head,
                                        ServerContext& ctx, Exchange& ex,
                                        const std::vector<std::string>& segments,
                                        const std::map<std::string, std::string>& query) {
  const Listener l = Listener::admin;
  const auto& req = head.get();
  if (segments.size() == 1 && segments[0] == "healthz") {
    ex.route = "/healthz";
    co_return co_await write_response(stream, l, ex, 200, R"({"status":"ok"})");
  }
  if (segments.size() == 1 && segments[0] == "metrics") {
    ex.route = "/metrics";
    co_return co_await write_response(stream, l, ex, 200, ctx.metrics.render(),
                                      "text/plain; version=0.0.4");
  }
  if (segments.empty() || segments[0] != "api") {
    // The web UI's files, compiled in. Everything else of the UI happens through the API.
    ex.route = "/ui";
    const std::string path = segments.empty() ? "/index.html" : "/" + segments.back();
    const auto assets = web_assets();
    const auto asset = std::find_if(assets.begin(), assets.end(),
                                    [&](const WebAsset& a) { return a.path == path; });
    if (segments.size() > 1 || asset == assets.end()) {
      co_return co_await write_api(stream, l, ex, api_error(404, "not_found", "no such resource"));
    }
    if (req.method() != http::verb::get) {
      co_return co_await write_api(stream, l, ex, api_error(405, "method_not_allowed", "use GET"));
    }
    co_return co_await write_response(stream, l, ex, 200, std::string(asset->bytes),
                                      asset->content_type);
  }
  if (segments.size() < 3 || segments[1] != "v1") {
    co_return co_await write_api(stream, l, ex, api_error(404, "not_found", "no such resource"));
  }
  ex.route = admin_route_pattern(segments);
  auto who = ctx.admin.authenticate(req[http::field::authorization]);
  if (!who) {
    // A body from someone who may not send one is never read (unread_body closes).
    co_return co_await write_api(stream, l, ex, api_error(who.error()));
  }
  ex.who = *who;
  if (segments.size() == 3 && segments[2] == "images" && req.method() == http::verb::post) {
    co_return co_await handle_upload(stream, buffer, head, ctx, ex);
  }
  const std::string method(req.method_string());  // `head` is consumed by the body read
  auto [ec, body] = co_await read_small_body(stream, buffer, head, l, ex, ctx.options.body_timeout);
  if (!body) {
    co_return ec;
  }
  std::string path;
  for (std::size_t i = 2; i < segments.size(); ++i) {
    path += "/" + segments[i];
  }
  co_return co_await write_api(stream, l, ex,
                               ctx.admin.handle(method, path, query, *body, unix_now()));
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

  std::shared_ptr<ssl::context> tls =
      l == Listener::device ? ctx.device_tls.current() : ctx.admin_tls;
  Stream stream(std::move(socket), *tls);
  auto& lowest = beast::get_lowest_layer(stream);

  // Shutdown cancels the wait for a next request, never a request in progress.
  bool idle = false;
  auto handle = std::make_shared<SessionHandle>();
  handle->strand = lowest.get_executor();
  handle->cancel_if_idle = [&idle, &lowest] {
    if (idle) {
      lowest.cancel();
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
  lowest.expires_after(ctx.options.handshake_timeout);
  if (auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, kNoThrow); ec) {
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

  beast::flat_buffer buffer;
  bool first = true;
  while (!ctx.draining) {
    http::request_parser<http::empty_body> head;
    head.header_limit(kMaxHeaderBytes);
    head.body_limit(boost::none);  // each route sets its own limit when it reads the body
    lowest.expires_after(first ? ctx.options.header_timeout : ctx.options.idle_timeout);
    idle = buffer.size() == 0;  // nothing of the next request has arrived yet
    auto [ec, n] = co_await http::async_read_header(stream, buffer, head, kNoThrow);
    idle = false;
    first = false;
    if (ec == asio::error::operation_aborted && ctx.draining) {
      break;
    }
    Exchange ex;
    if (device) {
      ex.who = device->device_id;
    }
    const auto started = std::chrono::steady_clock::now();
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == ssl::error::stream_truncated || ec == asio::error::eof ||
        ec == asio::error::connection_reset) {
      // The peer is done, idle too long, or (stream_truncated) closed without close_notify,
      // which is harmless here: HTTP framing tells us whether a message was complete.
      break;
    }
    if (ec) {
      ex.keep_alive = false;
      // Built outside the co_await: GCC 12 destroys a temporary from a conditional
      // expression inside a co_await operand twice.
      ApiResponse refusal = ec == http::error::header_limit
                                ? api_error(431, "headers_too_large", "request head over 8 KiB")
                                : api_error(400, "bad_request", "malformed HTTP request");
      (void)co_await write_api(stream, l, ex, std::move(refusal));
      ctx.metrics.request(listener_name(l), "invalid", ex.status);
      spdlog::info("request listener={} peer={} who={} status={} error={}", listener_name(l), peer,
                   ex.who, ex.status, log_value(ec.message()));
      break;
    }
    const auto& req = head.get();
    ex.method = std::string(req.method_string());
    ex.keep_alive = req.keep_alive();
    ex.unread_body = head.chunked() || head.content_length().value_or(0) > 0;

    std::vector<std::string> segments;
    std::map<std::string, std::string> query;
    auto url = boost::urls::parse_origin_form(req.target());
    bool valid_target = url.has_value();
    if (valid_target) {
      for (auto seg : url->segments()) {
        // A decoded segment holding '/' or a dot segment could reach somewhere unintended.
        if (seg.empty() || seg == "." || seg == ".." || seg.find('/') != std::string::npos) {
          valid_target = false;
          break;
        }
        segments.push_back(seg);
      }
      for (auto p : url->params()) {
        query[p.key] = p.value;
      }
    }
    error_code wec;
    if (!valid_target) {
      ex.keep_alive = false;
      wec = co_await write_api(stream, l, ex, api_error(400, "bad_request", "invalid target"));
    } else if (l == Listener::device) {
      wec = co_await route_device(stream, buffer, head, ctx, ex, *device, segments);
    } else {
      wec = co_await route_admin(stream, buffer, head, ctx, ex, segments, query);
    }
    const auto ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count();
    ctx.metrics.request(listener_name(l), ex.route, ex.status);
    spdlog::info(
        "request listener={} peer={} who={} method={} route={} status={} bytes={} ms={:.1f}",
        listener_name(l), peer, ex.who, ex.method, ex.route, ex.status, ex.bytes, ms);
    if (!wec && ex.unread_body) {
      // Answered without reading the body (401, 413, ...): closing now would reset the
      // connection under a client still sending, and the reset can destroy the answer before
      // the client reads it. Read and discard a bounded amount first (a "lingering close").
      std::vector<char> sink(kIoChunkBytes);
      std::size_t discarded = 0;
      lowest.expires_after(kLingerTimeout);
      while (discarded < kLingerBytes) {
        auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), kNoThrow);
        if (ec) {
          break;
        }
        discarded += n;
      }
    }
    if (wec || !ex.keep_alive || ex.unread_body) {
      break;
    }
  }
  lowest.expires_after(kShutdownTimeout);
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
