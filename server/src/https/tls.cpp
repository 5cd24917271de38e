// SPDX-License-Identifier: Apache-2.0
#include "https/tls.hpp"

#include "fwdepot/certs/pki.hpp"
#include "log.hpp"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

namespace fwdepot::server {
namespace {

namespace ssl = boost::asio::ssl;

// Forward secrecy and AEAD only. TLS 1.3 suites all qualify, so only 1.2 needs a list.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305";
constexpr unsigned char kSessionIdContext[] = "fwdepot-device";
constexpr long kSessionLifetimeSeconds = 300;

Error tls_error(std::string_view what) {
  return Error(certs::error::crypto_failure, std::string(what) + ": " + openssl::drain_errors());
}

result<std::shared_ptr<ssl::context>> base_context(const TlsMaterial& m) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use);
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    return tls_error("TLS settings");
  }
  SSL_CTX_set_options(
      native, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // OpenSSL frees a connection's record buffers when they are empty: a connection waiting for
  // its next request holds none (https/tls_stream.hpp; bench/README.md, idle connections).
  // The chain sent is the one configured: the certificate file's own (the server certificate
  // and any intermediates after it). Without this OpenSSL builds a chain from the trust store
  // at every handshake, verifying the server's own certificate each time, and sends the root
  // too, which devices already hold and parse for nothing (nginx sends what its file holds).
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
  // One TLS 1.3 ticket per handshake rather than OpenSSL's two. A device resumes with its
  // latest ticket and gets a fresh one each time; and each ticket costs OpenSSL 3.0 a decode of
  // the session with the device's certificate in it (a sixth of a full handshake's CPU here).
  SSL_CTX_set_num_tickets(native, 1);
  boost::system::error_code ec;
  ctx->use_certificate_chain(boost::asio::buffer(m.server_cert_pem), ec);
  if (ec) {
    return Error(certs::error::invalid_certificate, "server certificate: " + ec.message());
  }
  ctx->use_private_key(boost::asio::buffer(m.server_key_pem), ssl::context::pem, ec);
  if (ec) {
    return Error(core::error::invalid_key, "server key: " + ec.message());
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    openssl::clear_errors();
    return Error(certs::error::key_mismatch, "server key does not match the server certificate");
  }
  return ctx;
}

result<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error(boost::system::error_code(errno, boost::system::system_category()), path.string());
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string stamp_of(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return "missing";
  }
  return std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

}  // namespace

result<std::unique_ptr<ServerTls>> ServerTls::create(TlsMaterial material,
                                                     std::filesystem::path crl_path) {
  std::unique_ptr<ServerTls> tls(new ServerTls(material, std::move(crl_path)));
  std::lock_guard lock(tls->mutex_);
  if (auto r = tls->rebuild_locked(material); !r) {
    return r.error();
  }
  return tls;
}

result<void> ServerTls::rebuild_locked(const TlsMaterial& material) {
  file_stamp_ = stamp_of(crl_path_);
  auto crl_pem = read_file(crl_path_);
  if (!crl_pem) {
    return crl_pem.error();
  }
  auto crl = certs::Crl::from_pem(*crl_pem);
  if (!crl) {
    return Error(crl.error().code, crl_path_.string() + ": " + crl.error().message());
  }
  auto ca = certs::Certificate::chain_from_pem(material.ca_pem);
  if (!ca) {
    return Error(ca.error().code, "device CA: " + ca.error().message());
  }
  // A CRL from anyone but the device CA would let its author decide who is revoked.
  bool signed_by_ca = false;
  for (const auto& c : *ca) {
    openssl::PkeyPtr key(X509_get_pubkey(c.get()));
    if (key && X509_CRL_verify(crl->get(), key.get()) == 1) {
      signed_by_ca = true;
    }
  }
  openssl::clear_errors();
  if (!signed_by_ca) {
    return Error(certs::error::invalid_crl, crl_path_.string() + ": not signed by the device CA");
  }

  auto admin = base_context(material);
  if (!admin) {
    return admin.error();
  }
  auto device = base_context(material);
  if (!device) {
    return device.error();
  }
  SSL_CTX* native = (*device)->native_handle();
  openssl::X509StorePtr store(X509_STORE_new());
  if (!store) {
    return tls_error("X509_STORE_new");
  }
  for (const auto& c : *ca) {
    if (X509_STORE_add_cert(store.get(), c.get()) != 1) {
      return tls_error("adding the device CA");
    }
  }
  if (X509_STORE_add_crl(store.get(), crl->get()) != 1 ||
      X509_STORE_set_flags(store.get(), X509_V_FLAG_CRL_CHECK) != 1 ||
      X509_STORE_set_purpose(store.get(), X509_PURPOSE_SSL_CLIENT) != 1) {
    return tls_error("CRL settings");
  }
  SSL_CTX_set_cert_store(native, store.release());  // the context owns it now
  STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
  for (const auto& c : *ca) {
    sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(c.get())));
  }
  SSL_CTX_set_client_CA_list(native, names);
  SSL_CTX_set_verify(native, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_session_id_context(native, kSessionIdContext, sizeof kSessionIdContext - 1);
  // A resumed session skips the certificate checks, so it must not outlive them for long: each
  // CRL change builds a new context (new ticket keys: no old session resumes), and a session
  // lasts at most this long.
  SSL_CTX_set_timeout(native, kSessionLifetimeSeconds);
  device_ = std::move(*device);
  admin_ = std::move(*admin);
  material_ = material;
  spdlog::info("crl_loaded path={} number={} revoked={} next_update={}",
               log_value(crl_path_.string()), crl->number(), crl->revoked_count(),
               crl->next_update());
  return {};
}

std::shared_ptr<ssl::context> ServerTls::device() {
  std::lock_guard lock(mutex_);
  if (stamp_of(crl_path_) != file_stamp_) {
    if (auto r = rebuild_locked(material_); !r) {
      spdlog::error("crl_rejected kept=last_good error={}", log_value(r.error().message()));
    }
  }
  return device_;
}

std::shared_ptr<ssl::context> ServerTls::admin() {
  std::lock_guard lock(mutex_);
  return admin_;
}

result<void> ServerTls::reload() {
  std::lock_guard lock(mutex_);
  TlsMaterial next = material_;
  if (!material_.server_cert_path.empty()) {
    auto cert = read_file(material_.server_cert_path);
    auto key = read_file(material_.server_key_path);
    if (!cert || !key) {
      const Error e = !cert ? cert.error() : key.error();
      spdlog::error("tls_reload_rejected kept=last_good error={}", log_value(e.message()));
      return e;
    }
    next.server_cert_pem = std::move(*cert);
    next.server_key_pem = std::move(*key);
  }
  const bool renewed = next.server_cert_pem != material_.server_cert_pem;
  if (auto r = rebuild_locked(next); !r) {
    spdlog::error("tls_reload_rejected kept=last_good error={}", log_value(r.error().message()));
    // The CRL must not wait for a good certificate: a revocation in the same change is in
    // force with the last good pair.
    if (renewed) {
      if (auto crl = rebuild_locked(material_); !crl) {
        spdlog::error("crl_rejected kept=last_good error={}", log_value(crl.error().message()));
      }
    }
    return r.error();
  }
  if (renewed) {
    if (auto chain = certs::Certificate::chain_from_pem(next.server_cert_pem);
        chain && !chain->empty()) {
      spdlog::info("server_certificate_loaded serial={} not_after={}", chain->front().serial_hex(),
                   chain->front().not_after());
    }
  }
  return {};
}

}  // namespace fwdepot::server
