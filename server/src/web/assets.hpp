// SPDX-License-Identifier: Apache-2.0
// The admin web UI's files (web/), compiled into the server.
#pragma once

#include <span>
#include <string_view>

namespace fwdepot::server {

struct WebAsset {
  std::string_view path;  // "/index.html"
  std::string_view content_type;
  std::string_view bytes;
};

/// Every file of web/, generated at build time.
[[nodiscard]] std::span<const WebAsset> web_assets();

}  // namespace fwdepot::server
