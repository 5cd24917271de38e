// SPDX-License-Identifier: Apache-2.0
// Identifier rules shared by certificates, URLs, file names and the database.
#pragma once

#include "fwdepot/core/error.hpp"

#include <string_view>

namespace fwdepot {

/// Longest device id, model or image name we accept.
inline constexpr std::size_t kMaxIdentifierBytes = 64;

/// A device id, model or image name: 1 to 64 bytes of [A-Za-z0-9._-], not starting with '.' or
/// '-'. Such a string is safe as a path segment, a URL segment, a file name and a certificate
/// CN, so no layer needs its own escaping. `what` names the field in the error detail.
/// Errors: core::error::invalid_argument.
[[nodiscard]] result<void> validate_identifier(std::string_view value, std::string_view what);

}  // namespace fwdepot
