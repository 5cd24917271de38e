// SPDX-License-Identifier: Apache-2.0
// Failures of the catalog and the blob store.
#pragma once

#include "fwdepot/core/error.hpp"

namespace fwdepot::storage {

enum class error {
  ok = 0,
  not_found,         // no such row or blob
  conflict,          // a unique key is taken (image name+version, live token name, PSK identity)
  in_use,            // an image an active deployment still needs
  busy,              // the database stayed locked past the busy timeout
  corrupt,           // the database or a blob is damaged, or not a fwdepot database
  io_error,          // the operating system refused (details in the message)
  no_space,          // disk or quota full (the HTTP layer answers 507)
  invalid_argument,  // the caller broke a documented precondition
  schema_too_new,    // the database was written by a newer fwdepot
};

const boost::system::error_category& error_category() noexcept;
inline boost::system::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace fwdepot::storage

template <>
struct boost::system::is_error_code_enum<fwdepot::storage::error> : std::true_type {};
