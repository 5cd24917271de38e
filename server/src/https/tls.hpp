// SPDX-License-Identifier: Apache-2.0
// TLS contexts for the two listeners, and the device listener's CRL reloading.
#pragma once

#include "fwdepot/core/error.hpp"

#include <boost/asio/ssl/context.hpp>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

namespace fwdepot::server {

struct TlsMaterial {
  std::string server_cert_pem;
  std::string server_key_pem;
  std::string ca_pem;  // device CA
};

/// TLS 1.2 and 1.3 only; on TLS 1.2 only ECDHE key exchange with AEAD ciphers.
[[nodiscard]] result<std::shared_ptr<boost::asio::ssl::context>> make_admin_context(
    const TlsMaterial& material);

/// The device listener's context, rebuilt when the CRL file changes. Each new connection asks
/// current(): one stat(2) of the CRL file, and a rebuild only when it changed, so a revocation
/// is in force for the very next handshake without polling. A CRL that does not parse, or is
/// not signed by the CA, is logged and the last good context stays in force.
class DeviceTls {
 public:
  /// Errors: bad certificate, key or CA; a missing or bad CRL (at start we fail fast).
  [[nodiscard]] static result<std::unique_ptr<DeviceTls>> create(TlsMaterial material,
                                                                 std::filesystem::path crl_path);

  /// The context for a new connection. Thread-safe.
  [[nodiscard]] std::shared_ptr<boost::asio::ssl::context> current();
  /// Re-reads the CRL now (SIGHUP). Thread-safe.
  void reload();

 private:
  DeviceTls(TlsMaterial material, std::filesystem::path crl_path)
      : material_(std::move(material)), crl_path_(std::move(crl_path)) {}
  // Rebuilds from the file; the caller holds mutex_.
  result<void> rebuild_locked();

  TlsMaterial material_;
  std::filesystem::path crl_path_;
  std::mutex mutex_;
  std::shared_ptr<boost::asio::ssl::context> context_;
  std::string file_stamp_;  // inode, size and mtime of the CRL last looked at
};

}  // namespace fwdepot::server
