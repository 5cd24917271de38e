// SPDX-License-Identifier: Apache-2.0
// The HTTPS request path: reading requests from an established stream, routing them to the
// services, and writing the answers (downloads with ranges, uploads, the web UI's files). A
// template over the stream, so that the server runs it on TLS over TCP and the fuzz target on
// bytes in memory, with no socket. Include it only in the one translation unit that
// instantiates it (https/session.cpp; tests/fuzz/fuzz_http.cpp): it instantiates Beast.
#pragma once

#include "fwdepot/certs/pki.hpp"
#include "fwdepot/core/ids.hpp"
#include "https/response_head.hpp"
#include "https/session.hpp"
#include "log.hpp"
#include "service/checkin_writer.hpp"
#include "web/assets.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace fwdepot::server::requests {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

inline constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
inline constexpr std::size_t kMaxHeaderBytes = 8 * 1024;
inline constexpr std::size_t kMaxJsonBodyBytes = 64 * 1024;
inline constexpr std::size_t kIoChunkBytes = 64 * 1024;
inline constexpr std::size_t kFirstReadBytes = 4096;  // a typical request head
inline constexpr std::chrono::seconds kLingerTimeout{2};
inline constexpr std::size_t kLingerBytes = 1024 * 1024;

/// Arms the stream's deadline for the next operation: the TLS stream has one; a stream in
/// memory has nothing to wait for.
template <class Stream>
void expire_after(Stream& stream, std::chrono::steady_clock::duration d) {
  if constexpr (requires { stream.expires_after(d); }) {
    stream.expires_after(d);
  }
}

inline std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

// What the per-request log line and the metrics need to know about one exchange.
struct Exchange {
  std::string who = "-";  // device id or admin token name; never a secret
  std::string method;
  std::string route = "unknown";  // a fixed pattern, bounded cardinality
  int status = 0;
  std::uint64_t bytes = 0;
  bool keep_alive = true;
  bool unread_body = false;  // a body no route read: the connection cannot carry another request
  bool head = false;         // a HEAD request: every answer is headers only
};

template <class Stream>
asio::awaitable<error_code> write_response(Stream& stream, Listener l, Exchange& ex, int status,
                                           std::string body,
                                           std::string_view content_type = "application/json") {
  ResponseHead head(status, l);
  if (!body.empty() || status != 204) {
    head.set("Content-Type", content_type);
  }
  if (status == 401) {
    head.set("WWW-Authenticate", "Bearer");
  }
  if (!ResponseHead::has_body(status)) {
    body.clear();
  }
  const std::string text = head.finish(body.size(), ex.keep_alive && !ex.unread_body);
  ex.status = status;
  if (ex.head) {
    // The length of the answer a GET would get, and no body (RFC 9110 section 9.3.2): a body
    // here would be read as the start of the next response.
    body.clear();
  }
  ex.bytes = body.size();
  expire_after(stream, std::chrono::seconds(30));
  std::array<asio::const_buffer, 2> buffers{asio::buffer(text), asio::buffer(body)};
  if constexpr (requires(error_code e) { stream.try_write_some(buffers, e); }) {
    // A small answer usually fits the socket's buffer at once: sent here, it needs no
    // asynchronous write, whose completion would go through the scheduler.
    error_code ec;
    std::size_t sent = stream.try_write_some(buffers, ec);
    if (ec && ec != asio::error::would_block) {
      co_return ec;
    }
    for (auto& b : buffers) {
      const std::size_t n = std::min(sent, b.size());
      b += n;
      sent -= n;
    }
    if (buffers[0].size() + buffers[1].size() == 0) {
      co_return error_code{};
    }
  }
  auto [ec, n] = co_await asio::async_write(stream, buffers, kNoThrow);
  co_return ec;
}

// Not a coroutine of its own: one frame fewer per answer.
template <class Stream>
asio::awaitable<error_code> write_api(Stream& stream, Listener l, Exchange& ex,
                                      ApiResponse response) {
  return write_response(stream, l, ex, response.status, std::move(response.body));
}

// --- downloads --------------------------------------------------------------------------------

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
};

inline std::optional<std::uint64_t> parse_u64(std::string_view s) {
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
inline RangeResult parse_range(std::string_view header, std::uint64_t size, ByteRange& out) {
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

inline bool etag_matches(std::string_view list, std::string_view etag) {
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

// Sends an image the device is authorized for (GET or HEAD), with ranges and validators; the
// native download and DDI's artifact download both end here.
template <class Stream>
asio::awaitable<error_code> serve_image(Stream& stream, ServerContext& ctx, Exchange& ex,
                                        const http::request_header<>& req,
                                        const storage::ImageRecord& image) {
  const Listener l = Listener::device;
  const std::int64_t image_id = image.id;
  auto reader = ctx.backend.blobs().open_blob(image.sha256);
  if (!reader) {
    spdlog::error("blob_unreadable image={} error={}", image_id,
                  log_value(reader.error().message()));
    co_return co_await write_api(stream, l, ex, api_error(500, "internal", "image unavailable"));
  }
  const std::uint64_t size = (*reader)->size();
  const std::string etag = "\"" + hex_encode(image.sha256) + "\"";

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
  const bool keep_alive = ex.keep_alive && !ex.unread_body;
  if (ranged == RangeResult::unsatisfiable) {
    ex.status = 416;
    const std::string text = ResponseHead(416, l)
                                 .set("ETag", etag)
                                 .set("Accept-Ranges", "bytes")
                                 .set("Content-Range", "bytes */" + std::to_string(size))
                                 .finish(0, keep_alive);
    const asio::const_buffer buffer = asio::buffer(text);
    auto [ec, n] = co_await asio::async_write(stream, buffer, kNoThrow);
    co_return ec;
  }
  const std::uint64_t length = size == 0 ? 0 : range.last - range.first + 1;
  ex.status = ranged == RangeResult::ok ? 206 : 200;
  ResponseHead head(ex.status, l);
  head.set("ETag", etag)
      .set("Accept-Ranges", "bytes")
      .set("Content-Type", "application/octet-stream");
  if (ranged == RangeResult::ok) {
    head.set("Content-Range", "bytes " + std::to_string(range.first) + "-" +
                                  std::to_string(range.last) + "/" + std::to_string(size));
  }
  const std::string text = head.finish(length, keep_alive);
  expire_after(stream, ctx.options.body_timeout);
  const asio::const_buffer head_buffer = asio::buffer(text);
  if (auto [ec, n] = co_await asio::async_write(stream, head_buffer, kNoThrow); ec) {
    co_return ec;
  }
  if (req.method() == http::verb::head || length == 0) {
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
    expire_after(stream, ctx.options.body_timeout);
    const asio::const_buffer bytes = asio::buffer(chunk.data(), *got);
    if (auto [ec, n] = co_await asio::async_write(stream, bytes, kNoThrow); ec) {
      co_return ec;
    }
    offset += *got;
    remaining -= *got;
    ex.bytes += *got;
    ctx.metrics.bytes_served(*got);
  }
  co_return error_code{};
}

// --- request bodies ---------------------------------------------------------------------------

/// Feeds `parser` what `buffer` already holds and says whether that settled it: the head is
/// parsed (the whole message, for an eager parser) or malformed (`ec`). A request that arrived
/// whole, as a device's check-in does in one record, then needs no asynchronous read, whose
/// completion would go through the scheduler only to find the bytes already there. False: the
/// parser needs more, and keeps its state for the read that brings it.
template <bool isRequest>
bool parse_buffered(http::basic_parser<isRequest>& parser, beast::flat_buffer& buffer,
                    error_code& ec) {
  if (parser.is_done()) {
    return true;  // a message without a body: what is buffered is the next request's
  }
  while (buffer.size() > 0) {
    error_code put_ec;
    const std::size_t n = parser.put(buffer.data(), put_ec);
    buffer.consume(n);
    if (put_ec == http::error::need_more) {
      return false;
    }
    if (put_ec) {
      ec = put_ec;
      return true;
    }
    if (parser.is_done() || (parser.is_header_done() && !parser.eager())) {
      return true;
    }
    if (n == 0) {
      return false;
    }
  }
  return parser.is_done();
}

// Reads a JSON-sized body. Without a body to hand on, the error ends the session; a body over
// the limit has been answered with 413 by then.
template <class Stream>
asio::awaitable<std::pair<error_code, std::optional<std::string>>> read_small_body(
    Stream& stream, beast::flat_buffer& buffer, http::request_parser<http::empty_body>& head,
    Listener l, Exchange& ex, std::chrono::milliseconds timeout) {
  if (head.content_length().value_or(0) > kMaxJsonBodyBytes) {
    // Refused on the declared length, before a parser sized by it exists (a string body
    // reserves its Content-Length). The body stays unread: the connection lingers, then closes.
    ex.keep_alive = false;
    ApiResponse refusal = api_error(413, "too_large", "request body over 64 KiB");
    co_return std::pair{co_await write_api(stream, l, ex, std::move(refusal)), std::nullopt};
  }
  ex.unread_body = false;
  http::request_parser<http::string_body> parser(std::move(head));
  parser.body_limit(kMaxJsonBodyBytes);
  parser.eager(true);
  error_code ec;
  if (!parse_buffered(parser, buffer, ec)) {
    expire_after(stream, timeout);
    std::tie(ec, std::ignore) = co_await http::async_read(stream, buffer, parser, kNoThrow);
  }
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

template <class Stream>
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
    const asio::const_buffer cont = asio::buffer(continue_head());
    auto [ec, n] = co_await asio::async_write(stream, cont, kNoThrow);
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
    expire_after(stream, ctx.options.body_timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, kNoThrow);
    if (ec && ec != http::error::need_buffer) {
      ex.keep_alive = false;
      // A body cut short leaves nothing behind: the upload's temporary blob goes before the
      // answer does.
      upload->reset();
      (void)co_await write_api(stream, l, ex,
                               api_error(400, "bad_request", "request body incomplete"));
      co_return ec;
    }
    const std::size_t got = chunk.size() - parser.get().body().size;
    if (got > 0) {
      if (auto r = (*upload)->feed(std::string_view(chunk.data(), got)); !r) {
        ex.keep_alive = false;
        upload->reset();
        co_return co_await write_api(stream, l, ex, api_error(r.error()));
      }
    }
  }
  ApiResponse answer = (*upload)->finish(unix_now());
  upload->reset();  // a refused upload's temporary blob is gone before the client hears of it
  co_return co_await write_api(stream, l, ex, std::move(answer));
}

// --- routing ----------------------------------------------------------------------------------

inline std::string origin_of(const http::request_header<>& req, const char* scheme) {
  const auto host = req[http::field::host];
  if (host.empty() || host.find_first_of("/\\@ ") != std::string_view::npos) {
    return {};
  }
  return std::string(scheme) + "://" + std::string(host);
}

// The CoAPS origin on the host the device reached over HTTPS: "coaps://HOST:COAPS_PORT".
inline std::string coaps_origin_of(std::string_view https_origin, std::uint16_t coaps_port) {
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

// --- hawkBit DDI ------------------------------------------------------------------------------

// A DDI answer: documents are HAL (hawkBit's type), errors and empty answers plain JSON.
template <class Stream>
asio::awaitable<error_code> write_hal(Stream& stream, Listener l, Exchange& ex,
                                      ApiResponse response) {
  const bool document = response.status == 200 && !response.body.empty();
  return write_response(stream, l, ex, response.status, std::move(response.body),
                        document ? "application/hal+json" : "application/json");
}

// The route label of a DDI path (segments from the tenant on), from a closed set.
inline std::string ddi_route_pattern(const std::vector<std::string>& seg) {
  std::string out = "/{tenant}/controller/v1/{controllerId}";
  const std::size_t n = seg.size();
  if (n == 4) {
    return out;
  }
  if (n == 5 && seg[4] == "configData") {
    return out + "/configData";
  }
  if ((n == 6 || n == 7) && (seg[4] == "deploymentBase" || seg[4] == "cancelAction")) {
    out += "/" + seg[4] + "/{actionId}";
    if (n == 6) {
      return out;
    }
    return seg[6] == "feedback" ? out + "/feedback" : "unknown";
  }
  if (n == 8 && seg[4] == "softwaremodules" && seg[6] == "artifacts") {
    return out + "/softwaremodules/{moduleId}/artifacts/{fileName}";
  }
  return "unknown";
}

inline std::optional<std::int64_t> parse_positive_id(std::string_view s) {
  std::int64_t id = 0;
  const auto [p, err] = std::from_chars(s.data(), s.data() + s.size(), id);
  if (err != std::errc() || p != s.data() + s.size() || id <= 0) {
    return std::nullopt;
  }
  return id;
}

// /{tenant}/controller/v1/{controllerId}/...: the controller is the device its certificate
// names, and no other.
template <class Stream>
asio::awaitable<error_code> route_ddi(Stream& stream, beast::flat_buffer& buffer,
                                      http::request_parser<http::empty_body>& head,
                                      ServerContext& ctx, Exchange& ex,
                                      const certs::DeviceIdentity& device,
                                      const std::vector<std::string>& seg) {
  const Listener l = Listener::device;
  DdiService& ddi = *ctx.ddi;
  const auto& req = head.get();
  const auto method = req.method();
  ex.route = ddi_route_pattern(seg);
  if (!beast::iequals(seg[0], ddi.tenant())) {  // hawkBit's tenants ignore case
    co_return co_await write_api(stream, l, ex, api_error(404, "not_found", "unknown tenant"));
  }
  if (seg[3] != device.device_id) {
    co_return co_await write_api(
        stream, l, ex,
        api_error(403, "forbidden", "controllerId is not the identity of the device certificate"));
  }
  const std::string base = origin_of(req, "https") + "/" + seg[0] + "/controller/v1/" + seg[3];
  const std::size_t n = seg.size();
  if (n == 4) {
    if (method != http::verb::get) {
      co_return co_await write_api(stream, l, ex, api_error(405, "method_not_allowed", "use GET"));
    }
    co_return co_await write_hal(stream, l, ex, ddi.poll(device, base, unix_now()));
  }
  if (n == 5 && seg[4] == "configData") {
    if (method != http::verb::put) {
      co_return co_await write_api(stream, l, ex, api_error(405, "method_not_allowed", "use PUT"));
    }
    auto [ec, body] =
        co_await read_small_body(stream, buffer, head, l, ex, ctx.options.body_timeout);
    if (!body) {
      co_return ec;
    }
    co_return co_await write_hal(stream, l, ex, ddi.put_config_data(device, *body, unix_now()));
  }
  if ((n == 6 || n == 7) && (seg[4] == "deploymentBase" || seg[4] == "cancelAction")) {
    const auto id = parse_positive_id(seg[5]);
    if (!id || (n == 7 && seg[6] != "feedback")) {
      co_return co_await write_api(stream, l, ex, api_error(404, "not_found", "no such action"));
    }
    const bool cancel = seg[4] == "cancelAction";
    if (n == 6) {
      if (method != http::verb::get) {
        co_return co_await write_api(stream, l, ex,
                                     api_error(405, "method_not_allowed", "use GET"));
      }
      // Built outside the co_await: GCC 12 destroys a temporary from a conditional
      // expression inside a co_await operand twice.
      ApiResponse r =
          cancel ? ddi.cancel_action(device, *id) : ddi.deployment_base(device, *id, base);
      co_return co_await write_hal(stream, l, ex, std::move(r));
    }
    if (method != http::verb::post) {
      co_return co_await write_api(stream, l, ex, api_error(405, "method_not_allowed", "use POST"));
    }
    auto [ec, body] =
        co_await read_small_body(stream, buffer, head, l, ex, ctx.options.body_timeout);
    if (!body) {
      co_return ec;
    }
    ApiResponse r = cancel ? ddi.cancel_feedback(device, *id, *body, unix_now())
                           : ddi.deployment_feedback(device, *id, *body, unix_now());
    co_return co_await write_hal(stream, l, ex, std::move(r));
  }
  if (n == 8 && seg[4] == "softwaremodules" && seg[6] == "artifacts") {
    if (method != http::verb::get && method != http::verb::head) {
      co_return co_await write_api(stream, l, ex,
                                   api_error(405, "method_not_allowed", "use GET or HEAD"));
    }
    constexpr std::string_view kMd5Suffix = ".MD5SUM";
    const bool md5sum = seg[7].size() > kMd5Suffix.size() && seg[7].ends_with(kMd5Suffix);
    const std::string_view filename =
        md5sum ? std::string_view(seg[7]).substr(0, seg[7].size() - kMd5Suffix.size()) : seg[7];
    const auto id = parse_positive_id(seg[5]);
    auto image = id ? ddi.authorize_artifact(device, *id, filename)
                    : result<storage::ImageRecord>(
                          Error(storage::error::not_found, "no such artifact for this device"));
    if (!image) {
      co_return co_await write_api(stream, l, ex, api_error(image.error()));
    }
    if (md5sum) {
      // The format of md5sum(1), which `md5sum -c` checks.
      co_return co_await write_response(
          stream, l, ex, 200, image->md5_hex + "  " + image->filename + "\n", "text/plain");
    }
    co_return co_await serve_image(stream, ctx, ex, req, *image);
  }
  co_return co_await write_api(stream, l, ex, api_error(404, "not_found", "no such resource"));
}

/// Hands `c` to the group-commit writer; the operation completes, on the awaiting coroutine's
/// executor, once its batch has committed. The pending wait counts as work, so the io_context
/// does not run out of it (and return from run()) while check-ins are being written. Where the
/// writer delivers a batch's callbacks onto that executor already (one serving thread), each
/// resumes its coroutine at once, without another hop through the scheduler.
inline asio::awaitable<storage::RecordedCheckin> record_checkin(CheckinWriter& writer,
                                                                storage::DeviceCheckin c) {
  auto initiate = [&writer](auto handler, storage::DeviceCheckin checkin) {
    auto resume = asio::prefer(asio::get_associated_executor(handler),
                               asio::execution::outstanding_work.tracked);
    // Done is a std::function, which copies: the move-only handler is shared.
    auto shared = std::make_shared<decltype(handler)>(std::move(handler));
    writer.submit(std::move(checkin), [shared, resume](storage::RecordedCheckin r) {
      asio::dispatch(resume, [shared, r = std::move(r)]() mutable { (*shared)(std::move(r)); });
    });
  };
  return asio::async_initiate<decltype(asio::use_awaitable), void(storage::RecordedCheckin)>(
      initiate, asio::use_awaitable, std::move(c));
}

template <class Stream>
asio::awaitable<error_code> route_device(Stream& stream, beast::flat_buffer& buffer,
                                         http::request_parser<http::empty_body>& head,
                                         ServerContext& ctx, Exchange& ex,
                                         const certs::DeviceIdentity& device,
                                         const std::vector<std::string>& segments) {
  const Listener l = Listener::device;
  const auto& req = head.get();
  const auto method = req.method();
  if (ctx.ddi != nullptr && segments.size() >= 4 && segments[1] == "controller" &&
      segments[2] == "v1") {
    co_return co_await route_ddi(stream, buffer, head, ctx, ex, device, segments);
  }
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
    if (ctx.checkins == nullptr) {
      co_return co_await write_api(stream, l, ex,
                                   ctx.devices.checkin(device, *body, origin, coaps, unix_now()));
    }
    auto begun = ctx.devices.begin_checkin(device, *body);
    if (auto* answer = std::get_if<ApiResponse>(&begun)) {
      co_return co_await write_api(stream, l, ex, std::move(*answer));
    }
    const auto& pending = std::get<PendingCheckin>(begun);
    // Named, not a temporary in the co_await operand: GCC 12 mishandles those.
    auto write = record_checkin(*ctx.checkins, pending.record);
    const storage::RecordedCheckin recorded = co_await std::move(write);
    co_return co_await write_api(stream, l, ex,
                                 ctx.devices.finish_checkin(pending, recorded, origin, coaps));
  }
  if (api && segments.size() == 5 && segments[3] == "images") {
    ex.route = "/api/v1/device/images/{id}";
    if (method != http::verb::get && method != http::verb::head) {
      co_return co_await write_api(stream, l, ex,
                                   api_error(405, "method_not_allowed", "use GET or HEAD"));
    }
    const auto id = parse_positive_id(segments[4]);
    if (!id) {
      co_return co_await write_api(stream, l, ex, api_error(404, "not_found", "no such image"));
    }
    auto image = ctx.devices.authorize_download(device, *id);
    if (!image) {
      co_return co_await write_api(stream, l, ex, api_error(image.error()));
    }
    co_return co_await serve_image(stream, ctx, ex, req, *image);
  }
  co_return co_await write_api(stream, l, ex, api_error(404, "not_found", "no such resource"));
}

// The route label for metrics and logs, from a closed set: ids become {id}, and a path that is
// not a known route is "unknown", so that no client can grow a metric series per request.
inline std::string admin_route_pattern(const std::vector<std::string>& seg) {
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

template <class Stream>
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

// One request on a connection, from the rest of its head on (`ec`: how reading its first bytes
// went). Its state lives in this frame only while it runs: an idle connection keeps just
// serve_requests' small frame. Returns whether the connection can carry another request.
template <class Stream>
asio::awaitable<bool> serve_request(Stream& stream, beast::flat_buffer& buffer, error_code ec,
                                    bool first, Listener l, ServerContext& ctx,
                                    const std::optional<certs::DeviceIdentity>& device,
                                    const std::string& peer) {
  http::request_parser<http::empty_body> head;
  head.header_limit(kMaxHeaderBytes);
  head.body_limit(boost::none);  // each route sets its own limit when it reads the body
  if (!ec) {
    if (!first) {
      expire_after(stream, ctx.options.header_timeout);
    }
    if (!parse_buffered(head, buffer, ec)) {
      std::tie(ec, std::ignore) = co_await http::async_read_header(stream, buffer, head, kNoThrow);
    }
  }
  if (ec == asio::error::operation_aborted && ctx.draining) {
    co_return false;
  }
  Exchange ex;
  if (device) {
    ex.who = device->device_id;
  }
  const auto started = std::chrono::steady_clock::now();
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == asio::ssl::error::stream_truncated || ec == asio::error::eof ||
      ec == asio::error::connection_reset) {
    // The peer is done, idle too long, or (stream_truncated) closed without close_notify,
    // which is harmless here: HTTP framing tells us whether a message was complete.
    if (ec == beast::error::timeout && buffer.size() > 0) {
      spdlog::info("header_timeout listener={} peer={} who={} received={}", listener_name(l), peer,
                   ex.who, buffer.size());
    }
    co_return false;
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
    co_return false;
  }
  const auto& req = head.get();
  ex.method = std::string(req.method_string());
  ex.head = req.method() == http::verb::head;
  ex.keep_alive = req.keep_alive();
  ex.unread_body = head.chunked() || head.content_length().value_or(0) > 0;

  std::vector<std::string> segments;
  segments.reserve(8);  // the longest route (a DDI artifact) has 8
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
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  ctx.metrics.request(listener_name(l), ex.route, ex.status);
  spdlog::info("request listener={} peer={} who={} method={} route={} status={} bytes={} ms={:.1f}",
               listener_name(l), peer, ex.who, ex.method, ex.route, ex.status, ex.bytes, ms);
  if (!wec && ex.unread_body) {
    // Answered without reading the body (401, 413, ...): closing now would reset the
    // connection under a client still sending, and the reset can destroy the answer before
    // the client reads it. Read and discard a bounded amount first (a "lingering close").
    std::vector<char> sink(kIoChunkBytes);
    std::size_t discarded = 0;
    expire_after(stream, kLingerTimeout);
    while (discarded < kLingerBytes) {
      auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), kNoThrow);
      if (ec) {
        break;
      }
      discarded += n;
    }
  }
  co_return !wec && ex.keep_alive && !ex.unread_body;
}

/// Serves requests on an established stream until the peer is done, a request ends the
/// connection, the server drains or, on a stream that can wait for readability (the TLS
/// stream), the connection falls idle. `device` is the authenticated device on the device
/// listener (nullopt on the admin listener). `first` is true until the connection's first
/// request has been read: its head must arrive within the header timeout.
///
/// Returns true when the connection is idle: nothing of a next request has arrived and nothing
/// is buffered. The caller then waits for readability itself, within the idle timeout and
/// holding nothing of this coroutine, and calls again with `readable` true. Returns false when
/// the connection is done.
///
/// A stream that cannot wait for readability (the fuzz target's) is served in one call. On
/// either stream, `idle` is true exactly while a read waits with nothing of a next request
/// come through (the first request's, or one whose wake-up brought no whole record): the
/// server's shutdown cancels only such a wait.
template <class Stream>
asio::awaitable<bool> serve_requests(Stream& stream, Listener l, ServerContext& ctx,
                                     const std::optional<certs::DeviceIdentity>& device,
                                     const std::string& peer, bool& idle, bool& first,
                                     bool readable) {
  beast::flat_buffer buffer;
  while (!ctx.draining) {
    // Whatever the wait for the first byte was (the handshake's, or the caller's idle
    // timeout), the rest of the head must arrive within the header timeout.
    expire_after(stream, first || readable ? ctx.options.header_timeout : ctx.options.idle_timeout);
    error_code ec;
    if (buffer.size() == 0) {
      std::size_t n = 0;
      const auto space = buffer.prepare(kFirstReadBytes);
      if constexpr (requires { stream.async_wait_readable(kNoThrow); }) {
        if (!readable) {
          co_return true;
        }
        readable = false;
        // Readable: the bytes are usually there already, and reading them at once spares the
        // read a round through the scheduler.
        n = stream.try_read_some(space, ec);
      } else {
        ec = asio::error::would_block;
      }
      if (ec == asio::error::would_block) {
        idle = true;  // nothing of the next request has come through yet
        std::tie(ec, n) = co_await stream.async_read_some(space, kNoThrow);
        idle = false;
      }
      buffer.commit(n);
    }
    // Named, not a temporary in the co_await operand: GCC 12 mishandles those.
    auto request = serve_request(stream, buffer, ec, first, l, ctx, device, peer);
    first = false;
    if (!co_await std::move(request)) {
      break;
    }
  }
  co_return false;
}

}  // namespace fwdepot::server::requests
