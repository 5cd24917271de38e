// SPDX-License-Identifier: Apache-2.0
#include "tls.hpp"

#include "fwdepot/client/error.hpp"
#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/openssl.hpp"

#include <arpa/inet.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <sstream>

namespace fwdepot::client {
namespace {

namespace ssl = boost::asio::ssl;

// The server's policy, mirrored: forward secrecy and AEAD only.
constexpr const char* kDefaultTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305";

Error bad(std::string what) {
  return Error(error::invalid_argument, std::move(what) + openssl::drain_errors());
}

result<std::string> pem_bytes(const PemSource& s, std::string_view what) {
  if (s.kind == PemSource::Kind::buffer) {
    return s.pem;
  }
  if (s.kind == PemSource::Kind::directory) {
    return Error(error::invalid_argument, std::string(what) + ": a directory is not allowed here");
  }
  std::ifstream in(s.path, std::ios::binary);
  if (!in) {
    return Error(error::invalid_argument, std::string(what) + ": cannot read " + s.path.string());
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int version_of(TlsVersion v) { return v == TlsVersion::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION; }

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

int password_callback(char* buf, int size, int, void* user) {
  const auto* password = static_cast<const std::string*>(user);
  if (password == nullptr || password->size() > static_cast<std::size_t>(size)) {
    return -1;
  }
  std::memcpy(buf, password->data(), password->size());
  return static_cast<int>(password->size());
}

result<void> load_trust(X509_STORE* store, const CertificateSecurity& c) {
  for (const auto& src : c.trusted_certs) {
    if (src.kind == PemSource::Kind::file) {
      if (X509_STORE_load_file(store, src.path.c_str()) != 1) {
        return bad("trusted certificates " + src.path.string() + ": ");
      }
      continue;
    }
    if (src.kind == PemSource::Kind::directory) {
      if (X509_STORE_load_path(store, src.path.c_str()) != 1) {
        return bad("trusted certificate directory " + src.path.string() + ": ");
      }
      continue;
    }
    openssl::BioPtr bio = openssl::memory_bio(src.pem);
    int added = 0;
    while (openssl::X509Ptr cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) {
      if (X509_STORE_add_cert(store, cert.get()) != 1) {
        return bad("adding a trusted certificate: ");
      }
      ++added;
    }
    openssl::clear_errors();  // the loop ends on "no start line"
    if (added == 0) {
      return Error(error::invalid_argument, "trusted certificates: no PEM certificate in buffer");
    }
  }
  for (const auto& src : c.crls) {
    auto pem = pem_bytes(src, "CRL");
    if (!pem) {
      return pem.error();
    }
    openssl::BioPtr bio = openssl::memory_bio(*pem);
    int added = 0;
    while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
      const int ok = X509_STORE_add_crl(store, crl);
      X509_CRL_free(crl);
      if (ok != 1) {
        return bad("adding a CRL: ");
      }
      ++added;
    }
    openssl::clear_errors();
    if (added == 0) {
      return Error(error::invalid_argument, "CRL: no PEM CRL found");
    }
  }
  if (!c.crls.empty() &&
      X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL) != 1) {
    return bad("CRL flags: ");
  }
  return {};
}

result<void> load_identity(SSL_CTX* ctx, const CertificateSecurity& c) {
  if (!c.client_cert && !c.client_key) {
    return {};
  }
  if (!c.client_cert || !c.client_key) {
    return Error(error::invalid_argument, "client certificate and key go together");
  }
  auto cert_pem = pem_bytes(*c.client_cert, "client certificate");
  if (!cert_pem) {
    return cert_pem.error();
  }
  openssl::BioPtr bio = openssl::memory_bio(*cert_pem);
  openssl::X509Ptr leaf(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!leaf || SSL_CTX_use_certificate(ctx, leaf.get()) != 1) {
    return bad("client certificate: ");
  }
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {  // takes ownership on success
      X509_free(extra);
      return bad("client certificate chain: ");
    }
  }
  openssl::clear_errors();
  auto key_pem = pem_bytes(*c.client_key, "client key");
  if (!key_pem) {
    return key_pem.error();
  }
  openssl::BioPtr key_bio = openssl::memory_bio(*key_pem);
  const std::string* password = c.client_key_password ? &*c.client_key_password : nullptr;
  openssl::PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, password_callback,
                                               const_cast<std::string*>(password)));
  if (!key) {
    openssl::clear_errors();  // the reason could echo key material; keep it out of messages
    return Error(error::invalid_argument, "client key: unreadable, or a wrong password");
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    openssl::clear_errors();
    return Error(error::invalid_argument, "client key does not match the client certificate");
  }
  return {};
}

}  // namespace

result<std::shared_ptr<ssl::context>> make_tls_context(const SecurityConfig& config) {
  const auto* c = std::get_if<CertificateSecurity>(&config.credentials);
  if (c == nullptr) {
    return Error(error::unsupported_protocol,
                 "PSK security is for CoAPS; HTTPS needs certificates");
  }
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX* native = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(native, version_of(config.min_version)) != 1 ||
      (config.max_version &&
       SSL_CTX_set_max_proto_version(native, version_of(*config.max_version)) != 1)) {
    return bad("TLS version bounds: ");
  }
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  const std::string& ciphers =
      config.tls12_ciphers.empty() ? std::string(kDefaultTls12Ciphers) : config.tls12_ciphers;
  if (SSL_CTX_set_cipher_list(native, ciphers.c_str()) != 1) {
    return bad("TLS 1.2 cipher list: ");
  }
  if (!config.tls13_ciphersuites.empty() &&
      SSL_CTX_set_ciphersuites(native, config.tls13_ciphersuites.c_str()) != 1) {
    return bad("TLS 1.3 cipher suites: ");
  }
  if (c->trusted_certs.empty()) {
    if (SSL_CTX_set_default_verify_paths(native) != 1) {
      return bad("system trust store: ");
    }
  }
  if (auto r = load_trust(SSL_CTX_get_cert_store(native), *c); !r) {
    return r.error();
  }
  if (auto r = load_identity(native, *c); !r) {
    return r.error();
  }
  if (c->pinned_server_public_key) {
    openssl::BioPtr bio = openssl::memory_bio(*c->pinned_server_public_key);
    openssl::PkeyPtr pinned(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    if (!pinned) {
      return bad("pinned server public key: ");
    }
  }
  SSL_CTX_set_verify(native, c->server_cert_validation ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                     nullptr);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
  return ctx;
}

result<void> prepare_connection(SSL* ssl, const SecurityConfig& config, std::string_view host) {
  const std::string name = config.server_name.value_or(std::string(host));
  const bool ip = is_ip_literal(name);
  if (!ip && SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) {
    return bad("server name " + name + ": ");
  }
  const auto* c = std::get_if<CertificateSecurity>(&config.credentials);
  if (c != nullptr && c->server_cert_validation) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                      : X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
    if (ok != 1) {
      return bad("server name " + name + ": ");
    }
  }
  return {};
}

result<void> check_pinned_key(SSL* ssl, const SecurityConfig& config) {
  const auto* c = std::get_if<CertificateSecurity>(&config.credentials);
  if (c == nullptr || !c->pinned_server_public_key) {
    return {};
  }
  openssl::BioPtr bio = openssl::memory_bio(*c->pinned_server_public_key);
  openssl::PkeyPtr pinned(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  X509* peer = SSL_get0_peer_certificate(ssl);
  EVP_PKEY* presented = peer != nullptr ? X509_get0_pubkey(peer) : nullptr;
  if (!pinned || presented == nullptr) {
    openssl::clear_errors();
    return Error(error::server_key_mismatch, "no server key to compare with the pinned one");
  }
  auto der = [](EVP_PKEY* k) {
    unsigned char* out = nullptr;
    const int n = i2d_PUBKEY(k, &out);
    std::string s = n > 0 ? std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(n))
                          : std::string();
    OPENSSL_free(out);
    return s;
  };
  const std::string a = der(pinned.get());
  const std::string b = der(presented);
  if (a.empty() || a.size() != b.size() || !constant_time_equal(a, b)) {
    return Error(error::server_key_mismatch, "the server presented another public key");
  }
  return {};
}

}  // namespace fwdepot::client
