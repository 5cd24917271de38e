// SPDX-License-Identifier: Apache-2.0
#include "coaps/listener.hpp"

#include "coaps/block_cache.hpp"
#include "coaps/messages.hpp"

#include "fwdepot/certs/pki.hpp"
#include "fwdepot/core/ids.hpp"
#include "fwdepot/core/openssl.hpp"
#include "fwdepot/storage/blob_store.hpp"
#include "fwdepot/storage/catalog.hpp"
#include "https/tls.hpp"
#include "log.hpp"
#include "service/api.hpp"
#include "service/device_service.hpp"
#include "service/metrics.hpp"

#include <arpa/inet.h>
#include <coap3/coap.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <ctime>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>

namespace fwdepot::server {
namespace {

namespace asio = boost::asio;

constexpr std::size_t kMaxCheckinBody = 4096;

// A download's authorization is re-checked when a transfer (re)starts and at least this often
// while it runs, so a cancelled deployment stops being served without a query per block.
constexpr auto kReauthorizeAfter = std::chrono::seconds(10);

// What a DTLS session remembers between requests.
struct Peer {
  std::string address;   // the remote IP address, for the per-address session limit
  bool counted = false;  // authenticated, and counted against the session limits
  // Who the device is: set at the handshake for PSK, read from the certificate on first use.
  std::optional<certs::DeviceIdentity> who;
  bool who_resolved = false;
  // The last check-in answer, so that a device fetching it block by block gets the one answer
  // it asked for, not a new check-in per block.
  int code = 0;
  std::string answer;
  // The download in progress: its authorization and the open blob, kept between blocks.
  std::int64_t image_id = 0;
  storage::ImageRecord image;
  std::unique_ptr<storage::BlobReader> reader;
  std::chrono::steady_clock::time_point authorized_at;
};

// libcoap logs through us, at warning level and above, as escaped values.
void log_handler(coap_log_t level, const char* message) {
  std::string_view m(message);
  while (!m.empty() && (m.back() == '\n' || m.back() == '\r')) {
    m.remove_suffix(1);
  }
  if (level <= LOG_ERR) {
    spdlog::warn("coap_error message={}", log_value(m));
  } else {
    spdlog::debug("coap message={}", log_value(m));
  }
}

std::optional<certs::DeviceIdentity> certificate_identity(coap_session_t* session) {
  coap_tls_library_t lib{};
  auto* ssl = static_cast<SSL*>(coap_session_get_tls(session, &lib));
  if (ssl == nullptr || lib != COAP_TLS_LIBRARY_OPENSSL) {
    return std::nullopt;
  }
  if (SSL_get_verify_result(ssl) != X509_V_OK) {
    return std::nullopt;
  }
  return device_identity(openssl::X509Ptr(SSL_get1_peer_certificate(ssl)));
}

// An address's IP as text, without brackets or port; empty without one.
std::string ip_text(const coap_address_t* a) {
  char text[INET6_ADDRSTRLEN] = "";
  if (a == nullptr) {
    return {};
  }
  if (a->addr.sa.sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &a->addr.sin6.sin6_addr, text, sizeof text);
  } else {
    inet_ntop(AF_INET, &a->addr.sin.sin_addr, text, sizeof text);
  }
  return text;
}

std::string remote_ip(coap_session_t* session) {
  return ip_text(coap_session_get_addr_remote(session));
}

}  // namespace

struct CoapsListener::Impl {
  Impl(asio::io_context& io, CoapsLimits limits, ServerTls& tls, DeviceService& devices,
       Backend& backend, Metrics& metrics)
      : strand(asio::make_strand(io)),
        limits(limits),
        tls(tls),
        devices(devices),
        backend(backend),
        metrics(metrics) {}

  ~Impl() {
    descriptor.reset();
    if (context != nullptr) {
      coap_free_context(context);  // sessions still open get no SESSION_DEL: free ours below
    }
    for (Peer* p : peers) {
      delete p;
    }
  }

  static Impl& of(coap_session_t* session) {
    return *static_cast<Impl*>(coap_get_app_data(coap_session_get_context(session)));
  }

  Peer& peer(coap_session_t* session) {
    auto* p = static_cast<Peer*>(coap_session_get_app_data(session));
    if (p == nullptr) {
      p = new Peer;
      peers.insert(p);
      coap_session_set_app_data(session, p);
    }
    return *p;
  }

  // Who the session's device is, or nullptr: the PSK's device, or the certificate's CN.
  static const certs::DeviceIdentity* identity(coap_session_t* session, Peer& peer) {
    if (!peer.who_resolved) {
      peer.who = certificate_identity(session);
      peer.who_resolved = true;
    }
    return peer.who ? &*peer.who : nullptr;
  }

  // Authenticated sessions count against the limits, in total and per address: a handshake
  // that would exceed them is refused when the device has shown its credentials, and a session
  // counts once its handshake completes (a failed one never does). Half-open handshakes are
  // bounded by libcoap itself.
  bool admissible(coap_session_t* session, Peer& peer) {
    if (peer.counted) {
      return true;
    }
    peer.address = remote_ip(session);
    const auto it = per_address.find(peer.address);
    const std::size_t from_address = it == per_address.end() ? 0 : it->second;
    if (established < limits.max_sessions && from_address < limits.max_sessions_per_address) {
      return true;
    }
    metrics.handshake_failure("coaps", "session_limit");
    spdlog::warn("coaps_session_refused peer={} limit={}", log_value(peer.address),
                 established >= limits.max_sessions ? "total" : "per_address");
    return false;
  }

  void count(coap_session_t* session, Peer& peer) {
    if (peer.counted) {
      return;
    }
    if (peer.address.empty()) {
      peer.address = remote_ip(session);
    }
    ++per_address[peer.address];
    ++established;
    peer.counted = true;
    metrics.coaps_sessions(static_cast<std::int64_t>(established));
  }

  void release(Peer& peer) {
    if (!peer.counted) {
      return;
    }
    if (auto it = per_address.find(peer.address); it != per_address.end() && --it->second == 0) {
      per_address.erase(it);
    }
    --established;
    peer.counted = false;
    metrics.coaps_sessions(static_cast<std::int64_t>(established));
  }

  // libcoap's descriptor is an epoll set of its socket and its timer, which Asio watches
  // edge-triggered: a wake-up takes what is ready until nothing is, and libcoap reads one
  // datagram per round. Each round is one epoll_wait and libcoap's work (which re-arms its
  // timer once); after kRounds the rest waits behind the other listeners' handlers.
  void wait() {
    waiting = true;
    descriptor->async_wait(asio::posix::descriptor_base::wait_read,
                           asio::bind_executor(strand, [this](const boost::system::error_code& ec) {
                             waiting = false;
                             if (!ec && !stopped) {
                               drain();
                             }
                           }));
  }

  void drain() {
    constexpr int kRounds = 64;
    const int fd = coap_context_get_coap_fd(context);
    for (int round = 0; round < kRounds; ++round) {
      std::array<epoll_event, 16> events;
      const int n = ::epoll_wait(fd, events.data(), static_cast<int>(events.size()), 0);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n > 0) {
        coap_io_do_epoll(context, events.data(), static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0) {
        // Only a broken descriptor fails here (EBADF, EINVAL), and it stays broken: say so
        // once and stop listening rather than repeat the line at every wake-up.
        spdlog::error("coaps_listener_stopped reason=epoll_failed error={}",
                      log_value(std::strerror(errno)));
        stopped = true;
        return;
      }
      if (!waiting) {
        wait();
      }
      // With several threads, another one's reactor may take the readiness edge between the
      // empty round and the wait being queued: look once more after queuing it.
      if (threads == 1 || ::epoll_wait(fd, events.data(), 1, 0) <= 0) {
        return;
      }
    }
    asio::post(strand, [this] {
      if (!stopped) {
        drain();
      }
    });
  }

  // One line per request; a block-wise transfer logs its first block (and any failure) at
  // info, the blocks after it at debug, so a 64-byte-block download is not thousands of lines.
  void log_request(coap_session_t* session, const certs::DeviceIdentity* who, unsigned block,
                   const char* method, const char* route, int status, std::size_t bytes) {
    metrics.request("coaps", route, status);
    const auto level = block > 0 && status == 205 ? spdlog::level::debug : spdlog::level::info;
    if (!spdlog::should_log(level)) {
      return;
    }
    const coap_address_t* remote = coap_session_get_addr_remote(session);
    char peer_text[INET6_ADDRSTRLEN + 8] = "-";
    if (remote != nullptr) {
      (void)coap_print_addr(remote, reinterpret_cast<std::uint8_t*>(peer_text), sizeof peer_text);
    }
    spdlog::log(level,
                "request listener=coaps peer={} who={} method={} route={} status={} block={} "
                "bytes={}",
                log_value(peer_text), who ? who->device_id : "-", method, route, status, block,
                bytes);
  }

  static void on_checkin(coap_resource_t*, coap_session_t* session, const coap_pdu_t* request,
                         const coap_string_t*, coap_pdu_t* response) {
    Impl& self = of(session);
    Peer& peer = self.peer(session);
    const auto asked = block2(request);
    const unsigned block = block_number(asked);
    const certs::DeviceIdentity* who = identity(session, peer);
    if (block == 0) {
      std::size_t len = 0;
      const std::uint8_t* data = nullptr;
      if (coap_get_data(request, &len, &data) == 0) {
        len = 0;
      }
      ApiResponse r = who == nullptr ? api_error(401, "unauthorized", "no device identity")
                      : len > kMaxCheckinBody
                          ? api_error(413, "too_large", "check-in body over 4 KiB")
                          : self.devices.checkin(
                                *who, std::string_view(reinterpret_cast<const char*>(data), len),
                                origin(session, request, "https", self.https_port, false),
                                origin(session, request, "coaps", self.port, true),
                                static_cast<std::int64_t>(std::time(nullptr)));
      peer.code = r.status;
      peer.answer = std::move(r.body);
    } else if (peer.answer.empty()) {
      coap_pdu_set_code(response, COAP_RESPONSE_CODE_BAD_REQUEST);
      self.log_request(session, who, block, "POST", "/checkin", 400, 0);
      return;
    }
    const std::string& body = peer.answer;
    int status =
        answer_block(request, asked, response, body.size(), {}, COAP_MEDIATYPE_APPLICATION_JSON,
                     [&](std::uint64_t offset, std::span<char> out) {
                       std::copy_n(body.data() + offset, out.size(), out.data());
                       return true;
                     })
            .status;
    if (status == 205 && peer.code != 200) {
      coap_pdu_set_code(response, coap_code(peer.code));
      status = status_of(coap_code(peer.code));
    }
    self.log_request(session, who, block, "POST", "/checkin", status, body.size());
  }

  static void on_unknown_get(coap_resource_t*, coap_session_t* session, const coap_pdu_t* request,
                             const coap_string_t*, coap_pdu_t* response) {
    Impl& self = of(session);
    const auto asked = block2(request);
    const unsigned block = block_number(asked);
    const auto firmware = firmware_id(request);
    if (!firmware) {
      coap_pdu_set_code(response, COAP_RESPONSE_CODE_NOT_FOUND);
      self.log_request(session, nullptr, block, "GET", "unknown", 404, 0);
      return;
    }
    const std::int64_t id = *firmware;
    Peer& peer = self.peer(session);
    const certs::DeviceIdentity* who = identity(session, peer);
    if (!self.authorize(block > 0, peer, who, id)) {
      // Unknown, not offered, or no identity: one answer, so ids cannot be probed.
      coap_pdu_set_code(response, COAP_RESPONSE_CODE_FORBIDDEN);
      self.log_request(session, who, block, "GET", "/fw/{id}", 403, 0);
      return;
    }
    if (!peer.reader) {
      coap_pdu_set_code(response, COAP_RESPONSE_CODE_INTERNAL_ERROR);
      self.log_request(session, who, block, "GET", "/fw/{id}", 500, 0);
      return;
    }
    // ETag: the payload digest's first 8 bytes (CoAP's limit); it changes with the payload.
    const std::span<const std::uint8_t> etag(peer.image.sha256.data(), 8);
    std::size_t sent = 0;
    const BlockAnswer answer = answer_block(
        request, asked, response, peer.image.size_bytes, etag,
        COAP_MEDIATYPE_APPLICATION_OCTET_STREAM, [&](std::uint64_t offset, std::span<char> out) {
          if (!self.blocks.copy(peer.image.sha256, *peer.reader, offset, out)) {
            return false;
          }
          sent = out.size();
          return true;
        });
    self.metrics.bytes_served(sent);
    self.log_request(session, who, block, "GET", "/fw/{id}", answer.status, sent);
    if (!answer.more) {
      // The last block is out (or none could be): close the blob, so that idle sessions hold
      // no files open.
      self.close_blob(peer);
    }
  }

  // Whether `who` may have image `id`: asked of the catalog when a transfer starts (block 0),
  // when another image is asked for, and every kReauthorizeAfter; otherwise the session's
  // earlier answer stands, with the blob it opened.
  bool authorize(bool later_block, Peer& peer, const certs::DeviceIdentity* who, std::int64_t id) {
    const auto now = std::chrono::steady_clock::now();
    if (who != nullptr && later_block && peer.image_id == id &&
        now - peer.authorized_at < kReauthorizeAfter) {
      return true;
    }
    const bool same_transfer = later_block && peer.image_id == id;
    if (who == nullptr) {
      close_blob(peer);
      return false;
    }
    auto image = devices.authorize_download(*who, id);
    if (!image) {
      close_blob(peer);  // no longer offered: the blob it had open goes too
      return false;
    }
    if (!peer.reader || peer.image.sha256 != image->sha256) {
      close_blob(peer);
      if (auto reader = backend.blobs().open_blob(image->sha256)) {
        peer.reader = std::move(*reader);
        ++open_blobs;
      }
    }
    if (!same_transfer) {
      metrics.download_started(later_block);  // a later block first: a resumption
    }
    peer.image = std::move(*image);
    peer.image_id = id;
    peer.authorized_at = now;
    return true;
  }

  // Ends the session's download, if any. The block cache lives while some download runs.
  void close_blob(Peer& peer) {
    peer.image_id = 0;
    if (peer.reader) {
      peer.reader.reset();
      if (--open_blobs == 0) {
        blocks.clear();
      }
    }
  }

  // Every handshake verifies against the device listener's current store (the device CA and
  // the CRL that HTTPS uses, reloaded when its file changes) and presents the device listener's
  // current certificate: libcoap runs this on the ClientHello, before the server's certificate
  // is chosen, so a renewed certificate is in force for CoAPS too from the next handshake.
  static int tls_setup(void* tls_session, coap_dtls_pki_t* setup) {
    auto* self = static_cast<Impl*>(setup->cn_call_back_arg);
    auto* ssl = static_cast<SSL*>(tls_session);
    if (ssl == nullptr || self == nullptr) {
      return 0;
    }
    SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
    const auto context = self->tls.device();
    SSL_CTX* native = context->native_handle();
    STACK_OF(X509)* chain = nullptr;
    // Cleared first: libcoap has installed the certificate it started with, and a renewed one
    // of another key type would otherwise only take a second slot beside it.
    SSL_certs_clear(ssl);
    if (SSL_CTX_get0_chain_certs(native, &chain) != 1 ||
        SSL_use_cert_and_key(ssl, SSL_CTX_get0_certificate(native), SSL_CTX_get0_privatekey(native),
                             chain, 1) != 1) {
      return 0;
    }
    return SSL_set1_verify_cert_store(ssl, SSL_CTX_get_cert_store(native)) == 1 ? 1 : 0;
  }

  // OpenSSL has verified the chain and the CRL by now (it calls this only for a chain it
  // accepted); the leaf (depth 0) is where the session limits apply.
  static int accept_cn(const char*, const std::uint8_t*, std::size_t, coap_session_t* session,
                       unsigned depth, int, void* arg) {
    auto* self = static_cast<Impl*>(arg);
    return depth > 0 || self->admissible(session, self->peer(session)) ? 1 : 0;
  }

  // PSK handshakes: the key for the identity the device offers, looked up in the catalog each
  // time, so provisioning, rotation and removal apply to the next handshake. libcoap copies the
  // key into the session; the identity, never the key, may be logged.
  static const coap_bin_const_t* psk_for(coap_bin_const_t* identity, coap_session_t* session,
                                         void* arg) {
    auto* self = static_cast<Impl*>(arg);
    OPENSSL_cleanse(self->psk_key.data(), self->psk_key.size());
    self->psk_key.clear();
    if (identity == nullptr || identity->s == nullptr || identity->length == 0) {
      return nullptr;
    }
    const std::string_view name(reinterpret_cast<const char*>(identity->s), identity->length);
    auto psk = self->backend.with_catalog([&](storage::Catalog& c) { return c.find_psk(name); });
    if (!psk) {
      self->metrics.handshake_failure("coaps", "psk_identity");
      spdlog::info("coaps_psk_refused identity={} peer={}", log_value(name),
                   log_value(remote_ip(session)));
      return nullptr;
    }
    Peer& peer = self->peer(session);
    if (!self->admissible(session, peer)) {
      OPENSSL_cleanse(psk->key.data(), psk->key.size());
      return nullptr;
    }
    peer.who = certs::DeviceIdentity{psk->device_id, "", ""};
    peer.who_resolved = true;
    self->psk_key = std::move(psk->key);
    self->psk_bin = {self->psk_key.size(),
                     reinterpret_cast<const std::uint8_t*>(self->psk_key.data())};
    return &self->psk_bin;
  }

  static int on_event(coap_session_t* session, coap_event_t event) {
    Impl& self = of(session);
    if (event == COAP_EVENT_SERVER_SESSION_DEL) {
      auto* p = static_cast<Peer*>(coap_session_get_app_data(session));
      if (p != nullptr) {
        self.release(*p);
        self.close_blob(*p);
        self.peers.erase(p);
        delete p;
        coap_session_set_app_data(session, nullptr);
      }
    } else if (event == COAP_EVENT_DTLS_CONNECTED) {
      self.count(session, self.peer(session));
    } else if (event == COAP_EVENT_DTLS_ERROR) {
      self.metrics.handshake_failure("coaps", "dtls");
    }
    return 0;
  }

  // "SCHEME://HOST:PORT" as the device addressed us. CoAP's Host header is the Uri-Host and
  // Uri-Port options: a device behind a relay or a port mapping sends the address it used. Without
  // them: the local address the session arrived on. Over CoAPS the port is the one the device
  // used (`coaps_port` is ours otherwise); an https URL always carries our HTTPS port.
  static std::string origin(coap_session_t* session, const coap_pdu_t* request, const char* scheme,
                            std::uint16_t port, bool use_uri_port) {
    if (port == 0) {
      return {};
    }
    std::string host = uri_host(request);
    if (host.empty()) {
      const coap_address_t* local = coap_session_get_addr_local(session);
      host = ip_text(local);
      if (host.empty()) {
        return {};
      }
      if (local->addr.sa.sa_family == AF_INET6) {
        host = "[" + host + "]";
      }
    }
    if (const auto asked = uri_port(request); use_uri_port && asked) {
      port = *asked;
    }
    return std::string(scheme) + "://" + host + ":" + std::to_string(port);
  }

  asio::strand<asio::io_context::executor_type> strand;
  CoapsLimits limits;
  ServerTls& tls;
  DeviceService& devices;
  Backend& backend;
  Metrics& metrics;
  // libcoap re-reads these at every handshake and does not copy them: they live here.
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  coap_context_t* context = nullptr;
  coap_endpoint_t* endpoint = nullptr;
  std::optional<asio::posix::stream_descriptor> descriptor;
  std::set<Peer*> peers;
  BlockCache blocks;                               // the downloads' bytes
  std::size_t open_blobs = 0;                      // sessions holding a blob open
  std::map<std::string, std::size_t> per_address;  // counted sessions by remote IP
  std::size_t established = 0;                     // counted sessions in total
  std::string psk_key;  // the last key handed to libcoap, wiped at the next lookup
  coap_bin_const_t psk_bin{};
  std::uint16_t port = 0;
  std::uint16_t https_port = 0;
  std::string address_text;
  unsigned threads = 1;  // running the io_context
  bool waiting = false;  // a wait for the descriptor is queued
  bool stopped = false;
};

CoapsListener::CoapsListener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CoapsListener::~CoapsListener() = default;

result<std::unique_ptr<CoapsListener>> CoapsListener::create(
    asio::io_context& io, std::string_view listen, const TlsMaterial& material, CoapsLimits limits,
    ServerTls& tls, DeviceService& devices, Backend& backend, Metrics& metrics) {
  static std::once_flag started;
  std::call_once(started, [] {
    coap_startup();
    coap_set_log_handler(log_handler);
    coap_set_log_level(LOG_WARNING);
    coap_dtls_set_log_level(LOG_WARNING);
  });
  auto bad = [&](const std::string& why) {
    return Error(core::error::invalid_argument,
                 "coaps listen address '" + std::string(listen) + "': " + why);
  };
  const auto colon = listen.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return bad("expected ADDR:PORT");
  }
  std::string host(listen.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  const auto port_text = listen.substr(colon + 1);
  const auto [p, pec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || pec != std::errc() || p != port_text.data() + port_text.size() ||
      port > 65535) {
    return bad("bad port");
  }
  coap_address_t address;
  coap_address_init(&address);
  if (inet_pton(AF_INET, host.c_str(), &address.addr.sin.sin_addr) == 1) {
    address.addr.sin.sin_family = AF_INET;
    address.addr.sin.sin_port = htons(static_cast<std::uint16_t>(port));
    address.size = sizeof(address.addr.sin);
  } else if (inet_pton(AF_INET6, host.c_str(), &address.addr.sin6.sin6_addr) == 1) {
    address.addr.sin6.sin6_family = AF_INET6;
    address.addr.sin6.sin6_port = htons(static_cast<std::uint16_t>(port));
    address.size = sizeof(address.addr.sin6);
  } else {
    return bad("not an IP address");
  }

  auto impl = std::make_unique<Impl>(io, limits, tls, devices, backend, metrics);
  impl->ca_pem = material.ca_pem;
  impl->cert_pem = material.server_cert_pem;
  impl->key_pem = material.server_key_pem;
  impl->context = coap_new_context(nullptr);
  if (impl->context == nullptr) {
    return Error(core::error::invalid_argument, "coaps: cannot create a CoAP context");
  }
  coap_set_app_data(impl->context, impl.get());
  coap_register_event_handler(impl->context, &Impl::on_event);
  // Idle sessions beyond the total are dropped oldest first. libcoap keeps a little state for
  // every address that sent a ClientHello until its handshake completes or is 30 s old, and
  // ignores new ClientHellos while more than `max_handshakes` are pending: a flood from many
  // addresses must not fill that table (established sessions are never affected).
  coap_context_set_max_idle_sessions(
      impl->context, static_cast<unsigned>(std::min<std::size_t>(
                         limits.max_sessions, std::numeric_limits<unsigned>::max())));
  coap_context_set_max_handshake_sessions(
      impl->context, static_cast<unsigned>(std::min<std::size_t>(
                         limits.max_handshakes, std::numeric_limits<unsigned>::max())));
  coap_context_set_session_timeout(
      impl->context, static_cast<unsigned>(std::max<std::int64_t>(1, limits.idle_timeout.count())));

  coap_dtls_pki_t pki{};
  pki.version = COAP_DTLS_PKI_SETUP_VERSION;
  pki.verify_peer_cert = 1;  // a client certificate is required
  pki.check_common_ca = 1;
  pki.cert_chain_validation = 1;
  pki.cert_chain_verify_depth = 2;
  pki.check_cert_revocation = 1;
  pki.validate_cn_call_back = &Impl::accept_cn;
  pki.cn_call_back_arg = impl.get();
  pki.additional_tls_setup_call_back = &Impl::tls_setup;
  pki.pki_key.key_type = COAP_PKI_KEY_PEM_BUF;
  auto& buf = pki.pki_key.key.pem_buf;
  buf.ca_cert = reinterpret_cast<const std::uint8_t*>(impl->ca_pem.c_str());
  buf.ca_cert_len = impl->ca_pem.size() + 1;
  buf.public_cert = reinterpret_cast<const std::uint8_t*>(impl->cert_pem.c_str());
  buf.public_cert_len = impl->cert_pem.size() + 1;
  buf.private_key = reinterpret_cast<const std::uint8_t*>(impl->key_pem.c_str());
  buf.private_key_len = impl->key_pem.size() + 1;
  if (coap_context_set_pki(impl->context, &pki) != 1) {
    return Error(core::error::invalid_argument, "coaps: the server certificate or key is refused");
  }
  coap_dtls_spsk_t psk{};
  psk.version = COAP_DTLS_SPSK_SETUP_VERSION;
  psk.validate_id_call_back = &Impl::psk_for;
  psk.id_call_back_arg = impl.get();
  if (coap_context_set_psk2(impl->context, &psk) != 1) {
    return Error(core::error::invalid_argument, "coaps: PSK mode cannot be set up");
  }
  impl->endpoint = coap_new_endpoint(impl->context, &address, COAP_PROTO_DTLS);
  if (impl->endpoint == nullptr) {
    return bad("cannot bind");
  }
  // 4.3.1 has no getter for the bound address: its text form is "ADDR:PORT DTLS".
  const std::string text = coap_endpoint_str(impl->endpoint);
  const auto space = text.find(' ');
  impl->address_text = text.substr(0, space);
  const auto port_at = impl->address_text.rfind(':');
  unsigned bound = 0;
  std::from_chars(impl->address_text.data() + port_at + 1,
                  impl->address_text.data() + impl->address_text.size(), bound);
  impl->port = static_cast<std::uint16_t>(bound);

  coap_resource_t* checkin = coap_resource_init(coap_make_str_const("checkin"), 0);
  coap_register_handler(checkin, COAP_REQUEST_POST, &Impl::on_checkin);
  coap_add_resource(impl->context, checkin);
  coap_resource_t* unknown = coap_resource_unknown_init(nullptr);
  coap_register_handler(unknown, COAP_REQUEST_GET, &Impl::on_unknown_get);
  coap_add_resource(impl->context, unknown);

  const int fd = coap_context_get_coap_fd(impl->context);
  if (fd < 0) {
    return Error(core::error::invalid_argument, "coaps: libcoap was built without epoll");
  }
  impl->descriptor.emplace(io, ::dup(fd));  // the descriptor closes its own copy
  return std::unique_ptr<CoapsListener>(new CoapsListener(std::move(impl)));
}

std::uint16_t CoapsListener::port() const { return impl_->port; }
std::string CoapsListener::address() const { return impl_->address_text; }
void CoapsListener::set_https_port(std::uint16_t port) { impl_->https_port = port; }

void CoapsListener::start(unsigned threads) {
  impl_->threads = threads;
  asio::post(impl_->strand, [s = impl_.get()] {
    coap_io_process(s->context, COAP_IO_NO_WAIT);  // arms libcoap's timer
    s->wait();
  });
}

void CoapsListener::stop() {
  asio::post(impl_->strand, [s = impl_.get()] {
    s->stopped = true;
    boost::system::error_code ec;
    s->descriptor->cancel(ec);
  });
}

}  // namespace fwdepot::server
