// SPDX-License-Identifier: Apache-2.0
#include "logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>
#include <optional>
#include <utility>
#include <vector>

namespace fwdepot::cli {
namespace {

// The length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlongs, no surrogates,
// nothing above U+10FFFF), or 0.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b = at(i);
  std::size_t n = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  if (b >= 0xc2 && b <= 0xdf) {
    n = 2;
  } else if (b >= 0xe0 && b <= 0xef) {
    n = 3;
    lo = b == 0xe0 ? 0xa0 : 0x80;
    hi = b == 0xed ? 0x9f : 0xbf;
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 4;
    lo = b == 0xf0 ? 0x90 : 0x80;
    hi = b == 0xf4 ? 0x8f : 0xbf;
  } else {
    return 0;
  }
  if (i + n > s.size() || at(i + 1) < lo || at(i + 1) > hi) {
    return 0;
  }
  for (std::size_t k = 2; k < n; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xbf) {
      return 0;
    }
  }
  return n;
}

// JSON string contents: quotes, backslashes and control characters escaped, well-formed UTF-8
// kept as it is, and any other byte replaced by U+FFFD, so the line is valid JSON and UTF-8
// whatever the message held.
void append_json_string(std::string& out, std::string_view s) {
  constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      out += "\\u00";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else if (u < 0x80) {
      out += c;
    } else if (const std::size_t n = utf8_sequence(s, i); n > 0) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    } else {
      out += "\\ufffd";
    }
    ++i;
  }
  out += '"';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

// Splits `event k=v k="q"` into the event and its fields; nullopt if it is not that shape.
std::optional<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> parse(
    std::string_view m) {
  const auto space = m.find(' ');
  std::string event(m.substr(0, space));
  if (event.empty() || event.find('=') != std::string::npos) {
    return std::nullopt;
  }
  std::vector<std::pair<std::string, std::string>> fields;
  std::size_t i = space == std::string_view::npos ? m.size() : space;
  while (i < m.size()) {
    while (i < m.size() && m[i] == ' ') {
      ++i;
    }
    if (i == m.size()) {
      break;
    }
    const auto eq = m.find('=', i);
    if (eq == std::string_view::npos || eq == i || m.substr(i, eq - i).find(' ') != m.npos) {
      return std::nullopt;
    }
    std::string key(m.substr(i, eq - i));
    std::string value;
    i = eq + 1;
    if (i < m.size() && m[i] == '"') {
      for (++i;; ++i) {
        if (i >= m.size()) {
          return std::nullopt;  // unterminated
        }
        if (m[i] == '"') {
          ++i;
          break;
        }
        if (m[i] == '\\') {
          if (i + 1 < m.size() && (m[i + 1] == '"' || m[i + 1] == '\\')) {
            value += m[++i];
          } else if (i + 3 < m.size() && m[i + 1] == 'x' && hex_value(m[i + 2]) >= 0 &&
                     hex_value(m[i + 3]) >= 0) {
            value += static_cast<char>(hex_value(m[i + 2]) * 16 + hex_value(m[i + 3]));
            i += 3;
          } else {
            return std::nullopt;
          }
        } else {
          value += m[i];
        }
      }
      if (i < m.size() && m[i] != ' ') {
        return std::nullopt;
      }
    } else {
      const auto end = std::min(m.find(' ', i), m.size());
      value = std::string(m.substr(i, end - i));
      i = end;
    }
    fields.emplace_back(std::move(key), std::move(value));
  }
  return std::pair{std::move(event), std::move(fields)};
}

// Formats each record as a JSON line.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto t = std::chrono::system_clock::to_time_t(msg.time);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count() %
        1000;
    std::tm utc{};
    gmtime_r(&t, &utc);
    char ts[40];
    const auto n = std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(ts + n, sizeof ts - n, ".%03dZ", static_cast<int>(ms));
    const auto level = spdlog::level::to_string_view(msg.level);
    const std::string line =
        logfmt_to_json(ts, std::string_view(level.data(), level.size()),
                       std::string_view(msg.payload.data(), msg.payload.size())) +
        "\n";
    dest.append(line.data(), line.data() + line.size());
  }
  [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

std::string logfmt_to_json(std::string_view ts, std::string_view level, std::string_view message) {
  std::string out = "{\"ts\":";
  append_json_string(out, ts);
  out += ",\"level\":";
  append_json_string(out, level);
  const auto parsed = parse(message);
  if (!parsed) {
    out += ",\"msg\":";
    append_json_string(out, message);
    return out + "}";
  }
  out += ",\"event\":";
  append_json_string(out, parsed->first);
  for (const auto& [key, value] : parsed->second) {
    out += ',';
    // A field never shadows the envelope's names.
    const bool taken = key == "ts" || key == "level" || key == "event" || key == "msg";
    append_json_string(out, taken ? key + "_" : key);
    out += ':';
    append_json_string(out, value);
  }
  return out + "}";
}

void setup_logging(const std::string& level, std::string_view format, LogStream stream) {
  auto logger = stream == LogStream::out ? spdlog::stdout_logger_mt("fwdepot")
                                         : spdlog::stderr_logger_mt("fwdepot");
  if (format == "json") {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    // UTC timestamps, then the level, then `event key=value ...`: easy to grep.
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace fwdepot::cli
