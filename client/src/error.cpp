// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/client/error.hpp"

namespace fwdepot::client {
namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "fwdepot.client"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::ok:
        return "success";
      case error::invalid_argument:
        return "invalid argument";
      case error::invalid_uri:
        return "invalid URI";
      case error::unsupported_protocol:
        return "unsupported protocol";
      case error::connection_failed:
        return "connection failed";
      case error::timeout:
        return "timed out";
      case error::tls_failed:
        return "TLS handshake failed";
      case error::server_key_mismatch:
        return "server key does not match the pinned key";
      case error::server_error:
        return "server error";
      case error::refused:
        return "refused by the server";
      case error::image_changed:
        return "image changed on the server";
      case error::manifest_untrusted:
        return "manifest not signed by trusted keys";
      case error::wrong_model:
        return "image is not for this device model";
      case error::downgrade_refused:
        return "offered version is not newer";
      case error::offer_mismatch:
        return "offer does not match its signed manifest";
      case error::integrity_failure:
        return "payload does not match the manifest";
      case error::not_enough_storage:
        return "not enough storage";
      case error::out_of_memory:
        return "out of memory";
      case error::update_failed:
        return "update failed";
    }
    return "unknown fwdepot.client error";
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

std::string_view lwm2m_result(const Error& e) {
  if (e.code.category() == error_category()) {
    switch (static_cast<error>(e.code.value())) {
      case error::connection_failed:
      case error::timeout:
      case error::tls_failed:
      case error::server_key_mismatch:
      case error::server_error:
        return "connection_lost";
      case error::invalid_uri:
      case error::refused:
      case error::image_changed:
        return "invalid_uri";
      case error::unsupported_protocol:
        return "unsupported_protocol";
      case error::manifest_untrusted:
      case error::offer_mismatch:
      case error::integrity_failure:
        return "integrity_failure";
      case error::wrong_model:
      case error::downgrade_refused:
        return "unsupported_package";
      case error::not_enough_storage:
        return "not_enough_storage";
      case error::out_of_memory:
        return "out_of_memory";
      default:
        return "update_failed";
    }
  }
  if (e.code.category() == core::error_category()) {
    switch (static_cast<core::error>(e.code.value())) {
      case core::error::too_many_bytes:
      case core::error::size_mismatch:
      case core::error::digest_mismatch:
      case core::error::signature_threshold_not_met:
        return "integrity_failure";
      default:
        return "unsupported_package";
    }
  }
  if (e.code == boost::system::errc::no_space_on_device) {
    return "not_enough_storage";
  }
  if (e.code == boost::system::errc::not_enough_memory) {
    return "out_of_memory";
  }
  return "update_failed";
}

bool is_transient(const Error& e) {
  return e == error::connection_failed || e == error::timeout || e == error::server_error;
}

}  // namespace fwdepot::client
