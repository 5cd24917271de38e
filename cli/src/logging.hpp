// SPDX-License-Identifier: Apache-2.0
// The server's log: one line per event on stdout (containers collect it there), as
// `TIME LEVEL event key=value ...` text or as JSON lines.
#pragma once

#include <string>
#include <string_view>

namespace fwdepot::cli {

enum class LogStream { out, err };

/// Installs the default logger. `format` is "text" or "json" (config has checked it).
void setup_logging(const std::string& level, std::string_view format, LogStream stream);

/// One `event key=value key="quoted \"value\""` message (as server/src/log.hpp writes them) as
/// a JSON object with `ts` and `level` first; a message that is not in that shape becomes
/// {"ts", "level", "msg"}. Always valid JSON, whatever bytes the message holds.
[[nodiscard]] std::string logfmt_to_json(std::string_view ts, std::string_view level,
                                         std::string_view message);

}  // namespace fwdepot::cli
