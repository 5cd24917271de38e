// SPDX-License-Identifier: Apache-2.0
// TLS contexts for the two listeners, with CRL and server certificate reloading.
#pragma once

#include "fwdepot/core/error.hpp"

#include <boost/asio/ssl/context.hpp>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

namespace fwdepot::server {

struct TlsMaterial {
  std::string server_cert_pem;  // the server certificate, then its chain
  std::string server_key_pem;
  std::string ca_pem;  // device CA
  // Where the certificate and key came from: when set, reload() reads them again, so that a
  // renewed server certificate is in force without a restart. Empty: fixed at creation.
  std::filesystem::path server_cert_path;
  std::filesystem::path server_key_path;
};

/// The TLS contexts of both HTTPS listeners (and the certificates and verify store CoAPS uses):
/// TLS 1.2 and 1.3 only, on TLS 1.2 only ECDHE key exchange with AEAD ciphers. The device
/// context requires a client certificate from the device CA and checks it against the CRL.
///
/// Each new connection asks for the current context. The device context is rebuilt when the
/// CRL file changes (one stat(2) per connection), so a revocation is in force for the very next
/// handshake without polling. reload() (SIGHUP) also reads the server certificate and key
/// again. Whatever does not load (a CRL that does not parse or is not signed by the CA, a
/// certificate that does not parse, a key that does not match it) is logged and the last good
/// contexts stay in force, all of them: the listeners never serve a mix of old and new.
/// Connections already open keep the context they began with.
class ServerTls {
 public:
  /// Errors: bad certificate, key or CA; a missing or bad CRL (at start we fail fast).
  [[nodiscard]] static result<std::unique_ptr<ServerTls>> create(TlsMaterial material,
                                                                 std::filesystem::path crl_path);

  /// The device listener's context for a new connection. Thread-safe.
  [[nodiscard]] std::shared_ptr<boost::asio::ssl::context> device();
  /// The admin listener's context for a new connection. Thread-safe.
  [[nodiscard]] std::shared_ptr<boost::asio::ssl::context> admin();
  /// Re-reads the CRL and, when their paths are known, the server certificate and key (SIGHUP).
  /// Thread-safe. Errors: what did not load; the last good contexts are still in force.
  result<void> reload();

 private:
  ServerTls(TlsMaterial material, std::filesystem::path crl_path)
      : material_(std::move(material)), crl_path_(std::move(crl_path)) {}
  // Builds both contexts from `material` and the CRL file and installs them only if all of it
  // loads. The caller holds mutex_.
  result<void> rebuild_locked(const TlsMaterial& material);

  TlsMaterial material_;  // the last good
  std::filesystem::path crl_path_;
  std::mutex mutex_;
  std::shared_ptr<boost::asio::ssl::context> device_;
  std::shared_ptr<boost::asio::ssl::context> admin_;
  std::string file_stamp_;  // inode, size and mtime of the CRL last looked at
};

}  // namespace fwdepot::server
