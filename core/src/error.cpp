// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/error.hpp"

#include "fwdepot/core/openssl.hpp"

#include <openssl/err.h>

#include <boost/system/system_error.hpp>
#include <boost/throw_exception.hpp>

#include <ostream>

namespace fwdepot {

std::string Error::message() const {
  if (detail.empty()) {
    return code.message();
  }
  return code.message() + ": " + detail;
}

std::ostream& operator<<(std::ostream& os, const Error& e) { return os << e.message(); }

void throw_exception_from_error(const Error& e, const boost::source_location& loc) {
  boost::throw_exception(boost::system::system_error(e.code, e.detail), loc);
}

namespace core {
namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "fwdepot.core"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::ok:
        return "success";
      case error::invalid_argument:
        return "invalid argument";
      case error::malformed_json:
        return "malformed JSON";
      case error::document_too_large:
        return "document too large";
      case error::invalid_envelope:
        return "invalid DSSE envelope";
      case error::wrong_payload_type:
        return "wrong DSSE payload type";
      case error::invalid_manifest:
        return "invalid manifest";
      case error::unsupported_schema:
        return "unsupported manifest schema";
      case error::invalid_version:
        return "invalid SemVer version";
      case error::invalid_key:
        return "invalid key";
      case error::unsupported_key_type:
        return "unsupported key type";
      case error::signature_threshold_not_met:
        return "signature threshold not met";
      case error::size_mismatch:
        return "image size does not match the manifest";
      case error::digest_mismatch:
        return "image SHA-256 does not match the manifest";
      case error::too_many_bytes:
        return "image is longer than the manifest says";
      case error::invalid_encoding:
        return "invalid encoding";
      case error::crypto_failure:
        return "cryptographic operation failed";
    }
    return "unknown fwdepot.core error";
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

}  // namespace core

namespace openssl {

std::string drain_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) {
      out += "; ";
    }
    out += buf;
  }
  return out;
}

void clear_errors() noexcept { ERR_clear_error(); }

BioPtr memory_bio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

}  // namespace openssl
}  // namespace fwdepot
