// SPDX-License-Identifier: Apache-2.0
// What the transport-free services hand back to the HTTPS (and later CoAPS) adapters.
#pragma once

#include "fwdepot/core/error.hpp"
#include "fwdepot/storage/blob_store.hpp"
#include "fwdepot/storage/catalog.hpp"

#include <mutex>
#include <string>
#include <string_view>

namespace fwdepot::server {

/// Refusals that belong to the API layer rather than to a module below it.
enum class error {
  ok = 0,
  unauthorized,            // no or bad credentials (401)
  forbidden,               // authenticated, but not allowed (403)
  payload_too_large,       // over a configured limit (413)
  unsupported_media_type,  // wrong Content-Type (415)
};
const boost::system::error_category& error_category() noexcept;
inline boost::system::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// A JSON answer: HTTP status code and body. CoAP maps the status onto its own codes.
struct ApiResponse {
  int status = 200;
  std::string body;  // JSON
};

/// {"error":{"code":CODE,"message":MESSAGE}} with `status`.
[[nodiscard]] ApiResponse api_error(int status, std::string_view code, std::string_view message);

/// Maps a failure to the status and code an API client should see (not_found → 404,
/// conflict → 409, in_use → 409, no_space → 507, busy → 503, input errors → 400/422, the rest
/// → 500 without internals).
[[nodiscard]] ApiResponse api_error(const Error& e);

/// The catalog and blob store, shared by every connection. SqliteCatalog is used by one thread
/// at a time, so every catalog call goes through lock().
class Backend {
 public:
  Backend(std::unique_ptr<storage::Catalog> catalog, std::unique_ptr<storage::BlobStore> blobs)
      : catalog_(std::move(catalog)), blobs_(std::move(blobs)) {}

  template <class Fn>
  auto with_catalog(Fn&& fn) {
    std::lock_guard lock(mutex_);
    return fn(*catalog_);
  }
  storage::BlobStore& blobs() { return *blobs_; }

 private:
  std::mutex mutex_;
  std::unique_ptr<storage::Catalog> catalog_;
  std::unique_ptr<storage::BlobStore> blobs_;
};

}  // namespace fwdepot::server

template <>
struct boost::system::is_error_code_enum<fwdepot::server::error> : std::true_type {};
