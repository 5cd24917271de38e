// SPDX-License-Identifier: Apache-2.0
// The CoAPS transport: libcoap 4.3.1's client API over DTLS 1.2, with a certificate or a
// pre-shared key. In certificate mode the server is checked exactly as over HTTPS: the device's
// trust store and CRLs, the server name or address, the pinned key. A DTLS session per origin
// stays open between exchanges for a while, so the download after a check-in needs no new
// handshake. Block2 is driven here, one block per exchange, so that a download resumes at the
// block holding its first missing byte and every block reaches the sink as it arrives.
#include "fwdepot/client/error.hpp"
#include "fwdepot/core/encoding.hpp"
#include "tls.hpp"
#include "transport.hpp"

#include <coap3/coap.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <cstring>
#include <map>
#include <mutex>
#include <optional>

namespace fwdepot::client {
namespace {

constexpr std::size_t kMaxAnswerBytes = 1024 * 1024;
// A DTLS session idle longer than this is not reused: the server may have dropped it (its
// default idle timeout is 120 s), and a request into a forgotten session only times out.
constexpr auto kReuseWindow = std::chrono::seconds(60);
constexpr std::size_t kMaxPskIdentity = 64;  // libcoap's limits
constexpr std::size_t kMaxPskKey = 64;

// libcoap 4.3.1 keeps process-wide state without locks: one exchange at a time per process.
std::mutex& libcoap_mutex() {
  static std::mutex m;
  return m;
}

struct Target {
  std::string url;
  std::string host;
  std::string port;
  unsigned port_number = 5684;
  std::vector<std::string> path;  // Uri-Path segments
};

result<Target> parse_target(const std::string& url) {
  auto u = boost::urls::parse_absolute_uri(url);
  if (!u || u->scheme() != "coaps" || u->host().empty() || u->has_query()) {
    return Error(error::invalid_uri, "not a coaps URL: " + url);
  }
  Target t;
  t.url = url;
  t.host = u->host_address();
  t.port = u->has_port() ? std::string(u->port()) : "5684";
  if (u->has_port() && (u->port_number() == 0 || t.port.size() > 5)) {
    return Error(error::invalid_uri, "bad port in " + url);
  }
  t.port_number = u->has_port() ? u->port_number() : 5684;
  for (auto segment : u->segments()) {
    if (!segment.empty()) {
      t.path.emplace_back(segment);
    }
  }
  return t;
}

// The server's {"error":{"message":...}}, or the CoAP code as text ("4.03").
Error status_error(coap_pdu_code_t code, const std::string& body) {
  const int c = static_cast<int>(code);
  const std::string text =
      std::to_string(c >> 5) + "." + (c % 32 < 10 ? "0" : "") + std::to_string(c % 32);
  std::string message = "CoAP " + text;
  std::error_code ec;
  auto v = boost::json::parse(body, ec);
  if (!ec && v.is_object()) {
    if (const auto* e = v.as_object().if_contains("error"); e && e->is_object()) {
      if (const auto* m = e->as_object().if_contains("message"); m && m->is_string()) {
        message += ": " + std::string(m->as_string());
      }
    }
  }
  if (code == COAP_RESPONSE_CODE_BAD_OPTION) {
    return Error(error::image_changed, message);  // a block past the end: not this payload
  }
  return Error((c >> 5) >= 5 ? error::server_error : error::refused, message);
}

unsigned szx_of(std::size_t block_size) {
  unsigned szx = 0;
  while (szx < 6 && (std::size_t{16} << szx) < block_size) {
    ++szx;
  }
  return szx;
}

struct Reply {
  coap_pdu_code_t code = COAP_EMPTY_CODE;
  std::optional<coap_block_t> block;
  std::string etag;  // the ETag option, hex in quotes; empty without one
  std::optional<std::uint64_t> size2;
  std::string payload;
};

struct Block2 {
  unsigned num = 0;
  unsigned szx = 6;
};

class CoapsTransport final : public Transport {
 public:
  explicit CoapsTransport(TransportOptions options) : options_(std::move(options)) {
    static std::once_flag started;
    std::call_once(started, [] { coap_startup(); });
    context_ = coap_new_context(nullptr);
    if (context_ != nullptr) {
      coap_set_app_data(context_, this);
      coap_register_response_handler(context_, &CoapsTransport::on_response);
      coap_register_nack_handler(context_, &CoapsTransport::on_nack);
      coap_register_event_handler(context_, &CoapsTransport::on_event);
    }
  }

  ~CoapsTransport() override {
    std::lock_guard lock(libcoap_mutex());
    for (auto& [origin, s] : sessions_) {
      forget(*s);
    }
    if (context_ != nullptr) {
      coap_free_context(context_);
    }
  }

  CoapsTransport(const CoapsTransport&) = delete;
  CoapsTransport& operator=(const CoapsTransport&) = delete;

  result<std::string> checkin(const std::string& url, std::string_view json) override {
    std::lock_guard lock(libcoap_mutex());
    auto t = parse_target(url);
    if (!t) {
      return t.error();
    }
    // The answer may come in blocks; each continuation repeats the request, and the server
    // answers from the one check-in it made.
    std::string answer;
    Block2 want{0, szx_of(options_.coap_block_size)};
    for (;;) {
      auto r = exchange(*t, COAP_REQUEST_CODE_POST, want, false, json);
      if (!r) {
        return r.error();
      }
      if (r->code != COAP_RESPONSE_CODE_CONTENT) {
        return status_error(r->code, r->payload);
      }
      answer += r->payload;
      if (answer.size() > kMaxAnswerBytes) {
        return Error(error::server_error, "a check-in answer over 1 MiB");
      }
      if (!r->block || !r->block->m) {
        return answer;
      }
      want = {r->block->num + 1, r->block->szx};
    }
  }

  result<void> download(const DownloadRequest& request, DownloadSink& sink) override {
    std::lock_guard lock(libcoap_mutex());
    auto t = parse_target(request.url);
    if (!t) {
      return t.error();
    }
    const unsigned szx = szx_of(options_.coap_block_size);
    std::uint64_t next = request.offset;  // the first byte not yet stored
    Block2 want{static_cast<unsigned>(next >> (szx + 4)), szx};
    std::string etag;
    std::uint64_t total = 0;
    for (bool first = true;; first = false) {
      auto r = exchange(*t, COAP_REQUEST_CODE_GET, want, first, {});
      if (!r) {
        return r.error();
      }
      if (r->code != COAP_RESPONSE_CODE_CONTENT) {
        return status_error(r->code, r->payload);
      }
      if (!r->block && r->payload.size() > 0 && want.num > 0) {
        return Error(error::server_error, "a block-wise request answered without Block2");
      }
      const coap_block_t got = r->block.value_or(coap_block_t{0, 0, want.szx});
      const std::uint64_t at = std::uint64_t{got.num} << (got.szx + 4);
      if (first) {
        if (!r->size2 && r->block) {
          return Error(error::server_error, "a payload without Size2");
        }
        total = r->size2.value_or(r->payload.size());
        etag = r->etag;
        if (at > next || at + r->payload.size() < std::min(next + 1, total)) {
          return Error(error::server_error, "the server sent another block than asked for");
        }
        if (auto s = sink.begin(next, total, etag); !s) {
          return s.error();
        }
      } else if (r->etag != etag) {
        return Error(error::image_changed, "the payload changed during the download");
      } else if (at != next) {
        return Error(error::server_error, "the server sent another block than asked for");
      }
      const std::size_t skip = static_cast<std::size_t>(next - at);
      if (r->payload.size() > skip) {
        if (auto s = sink.data(std::string_view(r->payload).substr(skip)); !s) {
          return s.error();
        }
        next = at + r->payload.size();
      }
      if (!r->block || !got.m) {
        if (next != total) {
          return Error(error::connection_failed, "the transfer ended at byte " +
                                                     std::to_string(next) + " of " +
                                                     std::to_string(total));
        }
        return {};
      }
      want = {got.num + 1, got.szx};
    }
  }

  bool last_session_resumed() const override { return reused_; }

 private:
  struct Session {
    coap_session_t* session = nullptr;
    SecurityConfig config;
    std::shared_ptr<boost::asio::ssl::context> tls;  // certificate mode: store and identity
    std::string psk_identity;                        // PSK mode: libcoap keeps pointers to these
    std::string psk_key;
    std::string sni;
    std::chrono::steady_clock::time_point last_used;
  };

  // What the exchange in flight waits for.
  struct Pending {
    coap_session_t* session = nullptr;
    bool handshake = false;  // waiting for the handshake, not for an answer
    std::string token;
    bool done = false;
    std::optional<Error> failure;
    Reply reply;
  };

  static CoapsTransport* of(coap_session_t* session) {
    return static_cast<CoapsTransport*>(coap_get_app_data(coap_session_get_context(session)));
  }

  static coap_response_t on_response(coap_session_t* session, const coap_pdu_t*,
                                     const coap_pdu_t* received, const coap_mid_t) {
    CoapsTransport* self = of(session);
    Pending& p = self->pending_;
    const coap_bin_const_t token = coap_pdu_get_token(received);
    if (p.done || session != p.session ||
        std::string_view(reinterpret_cast<const char*>(token.s), token.length) != p.token) {
      return COAP_RESPONSE_OK;  // a late duplicate of an earlier exchange
    }
    Reply& r = p.reply;
    r.code = coap_pdu_get_code(received);
    coap_block_t block{};
    if (coap_get_block(received, COAP_OPTION_BLOCK2, &block) != 0) {
      r.block = block;
    }
    coap_opt_iterator_t it;
    if (const coap_opt_t* o = coap_check_option(received, COAP_OPTION_ETAG, &it)) {
      r.etag = "\"" +
               hex_encode(std::span<const std::uint8_t>(coap_opt_value(o), coap_opt_length(o))) +
               "\"";
    }
    if (const coap_opt_t* o = coap_check_option(received, COAP_OPTION_SIZE2, &it)) {
      r.size2 = coap_decode_var_bytes8(coap_opt_value(o), coap_opt_length(o));
    }
    std::size_t len = 0;
    const std::uint8_t* data = nullptr;
    if (coap_get_data(received, &len, &data) != 0) {
      r.payload.assign(reinterpret_cast<const char*>(data), len);
    }
    p.done = true;
    return COAP_RESPONSE_OK;
  }

  static void on_nack(coap_session_t* session, const coap_pdu_t*, const coap_nack_reason_t reason,
                      const coap_mid_t) {
    CoapsTransport* self = of(session);
    if (session != self->pending_.session || self->pending_.done) {
      return;
    }
    self->pending_.failure =
        reason == COAP_NACK_TLS_FAILED
            ? self->tls_failure(session)
            : Error(error::connection_failed, reason == COAP_NACK_TOO_MANY_RETRIES
                                                  ? "no answer after retransmissions"
                                                  : "the message could not be delivered");
  }

  // A session that fails or closes before its handshake completed was refused (a wrong CA,
  // name, key or certificate, on either side): not a network failure to retry.
  static int on_event(coap_session_t* session, const coap_event_t event) {
    CoapsTransport* self = of(session);
    Pending& p = self->pending_;
    if (session != p.session || p.done || p.failure ||
        (event != COAP_EVENT_DTLS_ERROR && event != COAP_EVENT_DTLS_CLOSED &&
         event != COAP_EVENT_SESSION_FAILED)) {
      return 0;
    }
    if (event == COAP_EVENT_DTLS_ERROR || p.handshake) {
      p.failure = self->tls_failure(session);
    } else {
      p.failure = Error(error::connection_failed, "the DTLS session closed");
    }
    return 0;
  }

  Error tls_failure(coap_session_t* session) const {
    std::string why = "DTLS handshake failed";
    coap_tls_library_t lib{};
    if (auto* ssl = static_cast<SSL*>(coap_session_get_tls(session, &lib));
        ssl != nullptr && lib == COAP_TLS_LIBRARY_OPENSSL) {
      if (const long verify = SSL_get_verify_result(ssl); verify != X509_V_OK) {
        why += ": " + std::string(X509_verify_cert_error_string(verify));
      }
    }
    return Error(error::tls_failed, why);
  }

  void forget(Session& s) {
    if (s.session != nullptr) {
      coap_session_release(s.session);
      s.session = nullptr;
    }
    OPENSSL_cleanse(s.psk_key.data(), s.psk_key.size());
  }

  // Runs libcoap until `done` says so, or `deadline` passes.
  template <class Done>
  bool run_until(Done&& done, std::chrono::steady_clock::time_point deadline) {
    while (!done()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return false;
      }
      coap_io_process(context_,
                      static_cast<std::uint32_t>(std::min<std::int64_t>(left.count() + 1, 1000)));
    }
    return true;
  }

  result<coap_address_t> resolve(const Target& t) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    addrinfo* found = nullptr;
    if (const int rc = ::getaddrinfo(t.host.c_str(), t.port.c_str(), &hints, &found); rc != 0) {
      return Error(error::connection_failed, "resolve " + t.host + ": " + gai_strerror(rc));
    }
    coap_address_t a;
    coap_address_init(&a);
    a.size = found->ai_addrlen;
    std::memcpy(&a.addr.sa, found->ai_addr, found->ai_addrlen);
    ::freeaddrinfo(found);
    return a;
  }

  // The open session for the target's origin, or a new one with its handshake done.
  result<Session*> session_for(const Target& t) {
    auto config = options_.security(t.url);
    if (!config) {
      return config.error();
    }
    const std::string origin = t.host + ":" + t.port;
    const auto now = std::chrono::steady_clock::now();
    if (auto it = sessions_.find(origin); it != sessions_.end()) {
      Session& s = *it->second;
      if (s.config == *config && s.session != nullptr &&
          coap_session_get_state(s.session) == COAP_SESSION_STATE_ESTABLISHED &&
          now - s.last_used < kReuseWindow) {
        reused_ = true;
        return &s;
      }
      forget(s);
      sessions_.erase(it);
    }
    reused_ = false;
    if (context_ == nullptr) {
      return Error(error::connection_failed, "no CoAP context");
    }
    auto address = resolve(t);
    if (!address) {
      return address.error();
    }
    auto owned = std::make_unique<Session>();
    Session& s = *owned;
    s.config = std::move(*config);
    s.sni = s.config.server_name.value_or(t.host);
    unsigned char ip[16];
    const bool literal =
        inet_pton(AF_INET, s.sni.c_str(), ip) == 1 || inet_pton(AF_INET6, s.sni.c_str(), ip) == 1;
    if (const auto* psk = std::get_if<PskSecurity>(&s.config.credentials)) {
      if (psk->identity.empty() || psk->identity.size() > kMaxPskIdentity || psk->key.empty() ||
          psk->key.size() > kMaxPskKey) {
        return Error(error::invalid_argument, "PSK identity and key: 1 to 64 bytes each");
      }
      s.psk_identity = psk->identity;
      s.psk_key = psk->key;
      coap_dtls_cpsk_t setup{};
      setup.version = COAP_DTLS_CPSK_SETUP_VERSION;
      setup.client_sni = literal ? nullptr : s.sni.data();
      setup.psk_info.identity = {s.psk_identity.size(),
                                 reinterpret_cast<const std::uint8_t*>(s.psk_identity.data())};
      setup.psk_info.key = {s.psk_key.size(),
                            reinterpret_cast<const std::uint8_t*>(s.psk_key.data())};
      s.session =
          coap_new_client_session_psk2(context_, nullptr, &*address, COAP_PROTO_DTLS, &setup);
    } else {
      auto tls = make_tls_context(s.config);
      if (!tls) {
        return tls.error();
      }
      s.tls = std::move(*tls);
      const auto& c = std::get<CertificateSecurity>(s.config.credentials);
      // libcoap loads nothing itself (no files, no buffers): the SSL object it makes is given
      // our identity, trust store (with CRLs) and name check below, before any of the server's
      // flight is read.
      coap_dtls_pki_t pki{};
      pki.version = COAP_DTLS_PKI_SETUP_VERSION;
      pki.verify_peer_cert = c.server_cert_validation ? 1 : 0;
      pki.cert_chain_validation = 1;
      pki.cert_chain_verify_depth = 8;
      pki.client_sni = literal ? nullptr : s.sni.data();
      pki.pki_key.key_type = COAP_PKI_KEY_PEM;
      s.session = coap_new_client_session_pki(context_, nullptr, &*address, COAP_PROTO_DTLS, &pki);
      if (s.session != nullptr) {
        if (auto r = configure(s, t.host); !r) {
          forget(s);
          return r.error();
        }
      }
    }
    if (s.session == nullptr) {
      return Error(error::connection_failed, "cannot open a DTLS session to " + origin);
    }
    coap_session_set_ack_timeout(
        s.session,
        coap_fixed_point_t{static_cast<std::uint16_t>(options_.coap_ack_timeout.count() / 1000),
                           static_cast<std::uint16_t>(options_.coap_ack_timeout.count() % 1000)});
    // The handshake, under the connect timeout, before anything is sent.
    pending_ = Pending{};
    pending_.session = s.session;
    pending_.handshake = true;
    const bool up = run_until(
        [&] {
          return pending_.failure ||
                 coap_session_get_state(s.session) == COAP_SESSION_STATE_ESTABLISHED;
        },
        now + options_.connect_timeout);
    std::optional<Error> failure = std::move(pending_.failure);
    pending_ = Pending{};
    if (!up || failure) {
      forget(s);
      return failure ? *failure
                     : Error(error::timeout, "DTLS handshake with " + origin + ": timed out");
    }
    coap_tls_library_t lib{};
    if (auto* ssl = static_cast<SSL*>(coap_session_get_tls(s.session, &lib)); ssl != nullptr) {
      if (auto r = check_pinned_key(ssl, s.config); !r) {
        forget(s);
        return r.error();
      }
    }
    sessions_[origin] = std::move(owned);
    return &s;
  }

  // Certificate mode: our identity, trust store and server name on libcoap's SSL object.
  result<void> configure(Session& s, const std::string& host) {
    coap_tls_library_t lib{};
    auto* ssl = static_cast<SSL*>(coap_session_get_tls(s.session, &lib));
    if (ssl == nullptr || lib != COAP_TLS_LIBRARY_OPENSSL) {
      return Error(error::tls_failed, "libcoap is not built on OpenSSL");
    }
    SSL_CTX* ours = s.tls->native_handle();
    if (X509* cert = SSL_CTX_get0_certificate(ours)) {
      STACK_OF(X509)* chain = nullptr;
      SSL_CTX_get0_chain_certs(ours, &chain);
      if (SSL_use_certificate(ssl, cert) != 1 ||
          SSL_use_PrivateKey(ssl, SSL_CTX_get0_privatekey(ours)) != 1 ||
          (chain != nullptr && SSL_set1_chain(ssl, chain) != 1)) {
        return Error(error::invalid_argument, "the client certificate or key is refused");
      }
    }
    if (SSL_set1_verify_cert_store(ssl, SSL_CTX_get_cert_store(ours)) != 1) {
      return Error(error::invalid_argument, "the trust store is refused");
    }
    SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
    return prepare_connection(ssl, s.config, host);
  }

  // One request and its answer, on the origin's session. A failed exchange drops the session:
  // the next one starts from a fresh handshake.
  result<Reply> exchange(const Target& t, coap_pdu_code_t code, Block2 block, bool ask_size,
                         std::string_view payload) {
    auto session = session_for(t);
    if (!session) {
      return session.error();
    }
    Session& s = **session;
    coap_pdu_t* pdu = coap_new_pdu(COAP_MESSAGE_CON, code, s.session);
    if (pdu == nullptr) {
      return Error(error::connection_failed, "cannot build a CoAP message");
    }
    std::uint8_t token[8];
    std::size_t token_length = 0;
    coap_session_new_token(s.session, &token_length, token);
    coap_add_token(pdu, token_length, token);
    // Uri-Host and Uri-Port always: through a relay or a port mapping, the server learns the
    // address we used and builds its download URL on it.
    coap_add_option(pdu, COAP_OPTION_URI_HOST, t.host.size(),
                    reinterpret_cast<const std::uint8_t*>(t.host.data()));
    std::uint8_t port_buf[2];
    coap_add_option(pdu, COAP_OPTION_URI_PORT,
                    coap_encode_var_safe(port_buf, sizeof port_buf, t.port_number), port_buf);
    for (const auto& segment : t.path) {
      coap_add_option(pdu, COAP_OPTION_URI_PATH, segment.size(),
                      reinterpret_cast<const std::uint8_t*>(segment.data()));
    }
    std::uint8_t buf[8];
    if (!payload.empty()) {
      coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT,
                      coap_encode_var_safe(buf, sizeof buf, COAP_MEDIATYPE_APPLICATION_JSON), buf);
    }
    coap_add_option(pdu, COAP_OPTION_BLOCK2,
                    coap_encode_var_safe(buf, sizeof buf, (block.num << 4) | block.szx), buf);
    if (ask_size) {
      coap_add_option(pdu, COAP_OPTION_SIZE2, 0, nullptr);  // RFC 7959 4: please send Size2
    }
    if (!payload.empty() &&
        coap_add_data(pdu, payload.size(), reinterpret_cast<const std::uint8_t*>(payload.data())) !=
            1) {
      coap_delete_pdu(pdu);
      return Error(error::invalid_argument, "a check-in body too large for one CoAP message");
    }
    pending_ = Pending{};
    pending_.session = s.session;
    pending_.token.assign(reinterpret_cast<char*>(token), token_length);
    if (coap_send(s.session, pdu) == COAP_INVALID_MID) {
      pending_ = Pending{};
      forget(s);
      sessions_.erase(t.host + ":" + t.port);
      return Error(error::connection_failed, "cannot send to " + t.host + ":" + t.port);
    }
    const bool answered = run_until([&] { return pending_.done || pending_.failure; },
                                    std::chrono::steady_clock::now() + options_.io_timeout);
    Pending p = std::move(pending_);
    pending_ = Pending{};
    if (!answered || p.failure || !p.done) {
      forget(s);
      sessions_.erase(t.host + ":" + t.port);
      return p.failure ? *p.failure
                       : Error(error::timeout, "no answer from " + t.host + ":" + t.port);
    }
    s.last_used = std::chrono::steady_clock::now();
    return std::move(p.reply);
  }

  TransportOptions options_;
  coap_context_t* context_ = nullptr;
  // By host:port. Held by pointer: libcoap keeps pointers into a session's PSK and SNI strings.
  std::map<std::string, std::unique_ptr<Session>> sessions_;
  Pending pending_;
  bool reused_ = false;
};

}  // namespace

std::unique_ptr<Transport> make_coaps_transport(TransportOptions options) {
  return std::make_unique<CoapsTransport>(std::move(options));
}

}  // namespace fwdepot::client
