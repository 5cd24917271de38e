// SPDX-License-Identifier: Apache-2.0
#include "service/api.hpp"

#include "fwdepot/certs/pki.hpp"

#include <boost/json.hpp>

namespace fwdepot::server {
namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "fwdepot.server"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::ok:
        return "success";
      case error::unauthorized:
        return "unauthorized";
      case error::forbidden:
        return "forbidden";
      case error::payload_too_large:
        return "payload too large";
      case error::unsupported_media_type:
        return "unsupported media type";
    }
    return "unknown fwdepot.server error";
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

ApiResponse api_error(int status, std::string_view code, std::string_view message) {
  boost::json::object inner{{"code", code}, {"message", message}};
  return {status, boost::json::serialize(boost::json::object{{"error", std::move(inner)}})};
}

ApiResponse api_error(const Error& e) {
  const auto& c = e.code;
  if (c.category() == error_category()) {
    switch (static_cast<server::error>(c.value())) {
      case server::error::unauthorized:
        return api_error(401, "unauthorized", e.message());
      case server::error::forbidden:
        return api_error(403, "forbidden", e.message());
      case server::error::payload_too_large:
        return api_error(413, "too_large", e.message());
      case server::error::unsupported_media_type:
        return api_error(415, "unsupported_media_type", e.message());
      default:
        return api_error(500, "internal", "internal error");
    }
  }
  if (c.category() == storage::error_category()) {
    using storage::error;
    switch (static_cast<error>(c.value())) {
      case error::not_found:
        return api_error(404, "not_found", e.message());
      case error::conflict:
        return api_error(409, "conflict", e.message());
      case error::in_use:
        return api_error(409, "in_use", e.message());
      case error::no_space:
        return api_error(507, "insufficient_storage", "no space left");
      case error::busy:
        return api_error(503, "busy", "database busy, retry");
      case error::invalid_argument:
        return api_error(400, "bad_request", e.message());
      default:
        return api_error(500, "internal", "storage failure");
    }
  }
  if (c.category() == core::error_category()) {
    switch (static_cast<core::error>(c.value())) {
      case core::error::crypto_failure:
        return api_error(500, "internal", "crypto failure");
      case core::error::document_too_large:
        return api_error(413, "too_large", e.message());
      case core::error::signature_threshold_not_met:
      case core::error::size_mismatch:
      case core::error::digest_mismatch:
      case core::error::too_many_bytes:
      case core::error::wrong_payload_type:
        return api_error(422, "verification_failed", e.message());
      default:
        return api_error(400, "bad_request", e.message());
    }
  }
  return api_error(500, "internal", "internal error");
}

}  // namespace fwdepot::server
