// SPDX-License-Identifier: Apache-2.0
// Log lines are "<event> key=value ...": one line per event, easy to grep and to parse.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

namespace fwdepot::server {

/// A value for a key=value log field: as is when it is a plain token, otherwise in double
/// quotes with quotes, backslashes and control characters escaped, so that a value sent by a
/// client can never forge a field or a line.
inline std::string log_value(std::string_view v) {
  const bool plain =
      !v.empty() && v.find_first_of(" \"\\=") == std::string_view::npos &&
      std::all_of(v.begin(), v.end(), [](char c) {
        return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
      });
  if (plain) {
    return std::string(v);
  }
  std::string out = "\"";
  for (const char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace fwdepot::server
