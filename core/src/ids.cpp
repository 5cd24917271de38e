// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/ids.hpp"

#include <string>

namespace fwdepot {

result<void> validate_identifier(std::string_view value, std::string_view what) {
  if (value.empty() || value.size() > kMaxIdentifierBytes) {
    return Error(core::error::invalid_argument, std::string(what) + " must be 1 to " +
                                                    std::to_string(kMaxIdentifierBytes) + " bytes");
  }
  if (value.front() == '.' || value.front() == '-') {
    return Error(core::error::invalid_argument,
                 std::string(what) + " must not start with '.' or '-'");
  }
  for (char c : value) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return Error(core::error::invalid_argument,
                   std::string(what) + " may contain only letters, digits, '.', '_' and '-'");
    }
  }
  return {};
}

}  // namespace fwdepot
