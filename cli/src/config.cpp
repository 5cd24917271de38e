// SPDX-License-Identifier: Apache-2.0
#include "config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <variant>

namespace fwdepot::cli {
namespace {

namespace fs = std::filesystem;

// Where each key lands in Config, and how its text is read.
using Target = std::variant<std::string Config::*, fs::path Config::*, std::int64_t Config::*,
                            std::vector<fs::path> Config::*>;

struct Spec {
  ConfigKey doc;
  Target target;
  std::string_view fallback;  // the default, as text (lists: comma separated)
  std::int64_t min = 0;
  std::int64_t max = 0;
};

constexpr std::int64_t kMaxInt = std::int64_t{1} << 53;  // exact in TOML tools and JSON

const std::array<Spec, 28> kSpecs = {{
    {{"server.device_listen", "device-listen", "ADDR:PORT for devices (port 0 picks one)"},
     &Config::device_listen,
     "0.0.0.0:8443"},
    {{"server.admin_listen", "admin-listen", "ADDR:PORT for admins and the web UI"},
     &Config::admin_listen,
     "127.0.0.1:8444"},
    {{"server.coaps_listen", "coaps-listen", "ADDR:PORT for CoAPS"},
     &Config::coaps_listen,
     "0.0.0.0:5684"},
    {{"server.threads", "threads", "worker threads; 0 is one per core"},
     &Config::threads,
     "0",
     0,
     256},
    {{"server.log_level", "log-level", "trace, debug, info, warn, error, critical or off"},
     &Config::log_level,
     "info"},
    {{"server.log_format", "log-format", "text or json (one object per line)"},
     &Config::log_format,
     "text"},
    {{"tls.ca", "tls-ca", "device CA certificate (PEM)"}, &Config::ca_cert, "pki/ca.pem"},
    {{"tls.ca_key", "tls-ca-key", "device CA key, for `fwdepot certs` only"},
     &Config::ca_key,
     "pki/ca.key"},
    {{"tls.cert", "tls-cert", "server certificate (PEM)"}, &Config::server_cert, "pki/server.pem"},
    {{"tls.key", "tls-key", "server private key (PEM)"}, &Config::server_key, "pki/server.key"},
    {{"tls.crl", "tls-crl", "certificate revocation list (PEM)"}, &Config::crl, "pki/crl.pem"},
    {{"signing.trusted_keys", "trusted-key", "release public key (repeatable)"},
     &Config::trusted_keys,
     "keys/signing.pub"},
    {{"signing.threshold", "threshold", "distinct trusted keys that must have signed"},
     &Config::threshold,
     "1",
     1,
     16},
    {{"storage.database", "database", "SQLite catalog file"}, &Config::database, "fwdepot.db"},
    {{"storage.blobs", "blobs", "blob store directory"}, &Config::blobs, "blobs"},
    {{"limits.max_image_bytes", "max-image-bytes", "largest accepted upload"},
     &Config::max_image_bytes,
     "1073741824",
     1,
     kMaxInt},
    {{"limits.max_connections", "max-connections", "open connections per listener"},
     &Config::max_connections,
     "10000",
     1,
     1'000'000},
    {{"limits.handshake_timeout_ms", "handshake-timeout-ms", "TLS handshake bound"},
     &Config::handshake_timeout_ms,
     "10000",
     100,
     600'000},
    {{"limits.header_timeout_ms", "header-timeout-ms", "whole request head bound"},
     &Config::header_timeout_ms,
     "10000",
     100,
     600'000},
    {{"limits.body_timeout_ms", "body-timeout-ms", "longest pause while a body moves"},
     &Config::body_timeout_ms,
     "30000",
     100,
     3'600'000},
    {{"limits.idle_timeout_ms", "idle-timeout-ms", "keep-alive wait for the next request"},
     &Config::idle_timeout_ms,
     "60000",
     100,
     3'600'000},
    {{"limits.shutdown_grace_ms", "shutdown-grace-ms", "time in-flight requests get on SIGTERM"},
     &Config::shutdown_grace_ms,
     "10000",
     0,
     3'600'000},
    {{"limits.coaps_max_sessions", "coaps-max-sessions", "authenticated CoAPS sessions in total"},
     &Config::coaps_max_sessions,
     "10000",
     1,
     1'000'000},
    {{"limits.coaps_max_sessions_per_address", "coaps-max-sessions-per-address",
      "authenticated CoAPS sessions from one IP address"},
     &Config::coaps_max_sessions_per_address,
     "256",
     1,
     1'000'000},
    {{"limits.coaps_max_handshakes", "coaps-max-handshakes",
      "half-open CoAPS (DTLS) handshakes, one per source address"},
     &Config::coaps_max_handshakes,
     "1000",
     1,
     1'000'000},
    {{"limits.coaps_idle_timeout_ms", "coaps-idle-timeout-ms", "an idle CoAPS session is dropped"},
     &Config::coaps_idle_timeout_ms,
     "120000",
     1000,
     86'400'000},
    {{"ddi.tenant", "ddi-tenant", "hawkBit DDI tenant in device URLs; empty turns DDI off"},
     &Config::ddi_tenant,
     "DEFAULT"},
    {{"ddi.polling_sleep_s", "ddi-polling-sleep-s", "polling interval DDI agents are told"},
     &Config::ddi_polling_sleep_s,
     "300",
     1,
     604'800},
}};

const Spec* find_spec(std::string_view key) {
  const auto it =
      std::find_if(kSpecs.begin(), kSpecs.end(), [&](const Spec& s) { return s.doc.key == key; });
  return it == kSpecs.end() ? nullptr : &*it;
}

bool is_list(const Spec& s) {
  return std::holds_alternative<std::vector<fs::path> Config::*>(s.target);
}
bool is_integer(const Spec& s) { return std::holds_alternative<std::int64_t Config::*>(s.target); }

// A key's value as text, before conversion: where it came from and what relative paths in it
// are relative to.
struct Raw {
  std::vector<std::string> values;
  fs::path base;
  std::string source;
};

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  for (std::size_t at = 0; at <= text.size();) {
    const auto comma = std::min(text.find(',', at), text.size());
    if (comma > at) {
      out.emplace_back(text.substr(at, comma - at));
    }
    at = comma + 1;
  }
  return out;
}

Error config_error(std::string_view where, const std::string& what) {
  return Error(core::error::invalid_argument, std::string(where) + ": " + what);
}

// Reads the file's keys into `raw`; a key the file does not know, or a value of the wrong type,
// is an error naming it.
result<void> read_file(const fs::path& file, const fs::path& base,
                       std::map<std::string_view, Raw>& raw) {
  // Debian's toml++ is built with exceptions; keep them inside this function.
  toml::table root;
  try {
    root = toml::parse_file(file.string());
  } catch (const toml::parse_error& err) {
    return config_error(file.string(), "line " + std::to_string(err.source().begin.line) + ": " +
                                           std::string(err.description()));
  }
  for (const auto& [section, node] : root) {
    const auto* table = node.as_table();
    if (table == nullptr) {
      return config_error(file.string(),
                          "'" + std::string(section.str()) + "' must be a [section]");
    }
    for (const auto& [name, value] : *table) {
      const std::string key = std::string(section.str()) + "." + std::string(name.str());
      const Spec* spec = find_spec(key);
      if (spec == nullptr) {
        return config_error(file.string(), "unknown key '" + key + "'");
      }
      Raw r{{}, base, "file"};
      if (is_list(*spec)) {
        const auto* array = value.as_array();
        if (array == nullptr) {
          return config_error(file.string(), "'" + key + "' must be an array of strings");
        }
        for (const auto& item : *array) {
          if (!item.is_string()) {
            return config_error(file.string(), "'" + key + "' must be an array of strings");
          }
          r.values.push_back(item.as_string()->get());
        }
      } else if (is_integer(*spec)) {
        if (!value.is_integer()) {
          return config_error(file.string(), "'" + key + "' must be an integer");
        }
        r.values.push_back(std::to_string(value.as_integer()->get()));
      } else {
        if (!value.is_string()) {
          return config_error(file.string(), "'" + key + "' must be a string");
        }
        r.values.push_back(value.as_string()->get());
      }
      raw[spec->doc.key] = std::move(r);
    }
  }
  return {};
}

// FWDEPOT_<SECTION>_<KEY> variables; within the configuration's sections, an unknown name is an
// error (a typo), while other FWDEPOT_* variables belong to other tools.
result<void> read_environment(char** environment, const fs::path& base,
                              std::map<std::string_view, Raw>& raw) {
  // FWDEPOT_SERVER_, FWDEPOT_TLS_, ...: one prefix per section of the key table.
  std::vector<std::string> sections;
  for (const Spec& s : kSpecs) {
    const std::string key(s.doc.key);
    std::string prefix = config_env_name(key.substr(0, key.find('.'))) + "_";
    if (std::find(sections.begin(), sections.end(), prefix) == sections.end()) {
      sections.push_back(std::move(prefix));
    }
  }
  for (char** e = environment; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto eq = entry.find('=');
    const std::string_view name = entry.substr(0, eq);
    if (eq == std::string_view::npos ||
        std::none_of(sections.begin(), sections.end(),
                     [&](const std::string& p) { return name.starts_with(p); })) {
      continue;
    }
    const auto spec = std::find_if(kSpecs.begin(), kSpecs.end(), [&](const Spec& s) {
      return config_env_name(s.doc.key) == name;
    });
    if (spec == kSpecs.end()) {
      return config_error("environment",
                          "unknown variable " + std::string(name) + " (no such configuration key)");
    }
    const std::string_view value = entry.substr(eq + 1);
    raw[spec->doc.key] =
        Raw{is_list(*spec) ? split_list(value) : std::vector<std::string>{std::string(value)}, base,
            "env " + std::string(name)};
  }
  return {};
}

// Converts each key's text into its Config field.
result<void> apply(const Spec& spec, const Raw& raw, Config& c) {
  const std::string where = std::string(spec.doc.key) + " (" + raw.source + ")";
  if (raw.values.empty()) {
    return config_error(where, "needs a value");
  }
  if (!is_list(spec) && raw.values.size() != 1) {
    return config_error(where, "takes one value");
  }
  const std::string& text = raw.values.front();
  return std::visit(
      [&](auto member) -> result<void> {
        using Field = std::remove_reference_t<decltype(c.*member)>;
        if constexpr (std::is_same_v<Field, std::int64_t>) {
          std::int64_t v = 0;
          const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
          if (ec != std::errc() || end != text.data() + text.size() || v < spec.min ||
              v > spec.max) {
            return config_error(where, "must be an integer from " + std::to_string(spec.min) +
                                           " to " + std::to_string(spec.max) + ", not '" + text +
                                           "'");
          }
          c.*member = v;
        } else if constexpr (std::is_same_v<Field, fs::path>) {
          if (text.empty()) {
            return config_error(where, "must be a path");
          }
          c.*member = raw.base / text;
        } else if constexpr (std::is_same_v<Field, std::vector<fs::path>>) {
          (c.*member).clear();
          for (const auto& v : raw.values) {
            if (v.empty()) {
              return config_error(where, "must list paths");
            }
            (c.*member).push_back(raw.base / v);
          }
        } else {
          // An empty CoAPS address turns that listener off; every other text needs a value.
          if (text.empty() && spec.doc.key != "server.coaps_listen") {
            return config_error(where, "must not be empty");
          }
          c.*member = text;
        }
        return {};
      },
      spec.target);
}

std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
    }
    out += ch;
  }
  return out + "\"";
}

}  // namespace

std::span<const ConfigKey> config_keys() {
  static const auto keys = [] {
    std::array<ConfigKey, kSpecs.size()> out;
    std::transform(kSpecs.begin(), kSpecs.end(), out.begin(), [](const Spec& s) { return s.doc; });
    return out;
  }();
  return keys;
}

std::string config_env_name(std::string_view key) {
  std::string out = "FWDEPOT_";
  for (const char ch : key) {
    out += ch == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  }
  return out;
}

std::string default_config_toml() {
  return R"(# fwdepot configuration. Relative paths are relative to this file's directory.

[server]
device_listen = "0.0.0.0:8443"    # HTTPS for devices, client certificates required
admin_listen = "127.0.0.1:8444"   # HTTPS for admins (bearer tokens) and the web UI
coaps_listen = "0.0.0.0:5684"     # CoAP over DTLS for constrained devices
threads = 0                       # worker threads; 0 is one per core
log_level = "info"                # trace, debug, info, warn, error, critical or off
log_format = "text"               # text, or json: one JSON object per line

[tls]
ca = "pki/ca.pem"                 # device CA; devices must present a certificate it issued
ca_key = "pki/ca.key"             # used by `fwdepot certs`, never loaded by the server
cert = "pki/server.pem"
key = "pki/server.key"
crl = "pki/crl.pem"

[signing]
trusted_keys = ["keys/signing.pub"]  # release keys whose signatures count
threshold = 1                        # distinct trusted keys that must have signed an image

[storage]
database = "fwdepot.db"
blobs = "blobs"

[limits]
max_image_bytes = 1073741824      # largest accepted upload, in bytes
max_connections = 10000           # open connections per listener; more are closed at once
handshake_timeout_ms = 10000      # TLS handshake
header_timeout_ms = 10000         # a whole request head, however slowly it trickles in
body_timeout_ms = 30000           # longest pause while a request or response body moves
idle_timeout_ms = 60000           # keep-alive wait for the next request
shutdown_grace_ms = 10000         # SIGTERM lets in-flight requests finish this long
coaps_max_sessions = 10000        # authenticated CoAPS (DTLS) sessions in total
coaps_max_sessions_per_address = 256  # ... from one IP address (NAT: raise it)
coaps_max_handshakes = 1000       # half-open DTLS handshakes (one per source address)
coaps_idle_timeout_ms = 120000    # an idle CoAPS session is dropped after this

[ddi]
tenant = "DEFAULT"                # hawkBit DDI at /TENANT/controller/v1/ID; "" turns it off
polling_sleep_s = 300             # the polling interval DDI agents are told (config.polling)
)";
}

result<Config> load_config(const fs::path& data_dir, const ConfigFlags& flags, char** environment) {
  const fs::path file = data_dir / "fwdepot.toml";
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    return config_error(file.string(),
                        "not found (run `fwdepot init --data " + data_dir.string() + "` first)");
  }
  Config c;
  c.data_dir = fs::absolute(data_dir, ec);
  const fs::path cwd = fs::current_path(ec);

  // Lowest precedence first: each layer replaces the keys it names.
  std::map<std::string_view, Raw> raw;
  for (const Spec& s : kSpecs) {
    raw[s.doc.key] = Raw{split_list(s.fallback), c.data_dir, "default"};
  }
  if (auto r = read_file(file, c.data_dir, raw); !r) {
    return r.error();
  }
  if (auto r = read_environment(environment, cwd, raw); !r) {
    return r.error();
  }
  for (const auto& [key, values] : flags) {
    const Spec* spec = find_spec(key);
    if (spec == nullptr) {
      return config_error("command line", "unknown key '" + key + "'");
    }
    raw[spec->doc.key] = Raw{values, cwd, "flag --" + std::string(spec->doc.flag)};
  }
  for (const Spec& s : kSpecs) {
    const Raw& r = raw.at(s.doc.key);
    if (auto a = apply(s, r, c); !a) {
      return a.error();
    }
    c.sources[std::string(s.doc.key)] = r.source;
  }

  constexpr std::array<std::string_view, 7> kLevels = {"trace", "debug",    "info", "warn",
                                                       "error", "critical", "off"};
  if (std::find(kLevels.begin(), kLevels.end(), c.log_level) == kLevels.end()) {
    return config_error("server.log_level (" + c.sources.at("server.log_level") + ")",
                        "must be one of trace, debug, info, warn, error, critical, off");
  }
  if (c.log_format != "text" && c.log_format != "json") {
    return config_error("server.log_format (" + c.sources.at("server.log_format") + ")",
                        "must be text or json");
  }
  // The tenant is the first segment of DDI URLs on the device listener, beside /api.
  if (!c.ddi_tenant.empty() && (c.ddi_tenant == "api" || c.ddi_tenant.size() > 64 ||
                                !std::all_of(c.ddi_tenant.begin(), c.ddi_tenant.end(), [](char ch) {
                                  return std::isalnum(static_cast<unsigned char>(ch)) != 0 ||
                                         ch == '_' || ch == '-' || ch == '.';
                                }))) {
    return config_error("ddi.tenant (" + c.sources.at("ddi.tenant") + ")",
                        "must be 1-64 letters, digits, '.', '_' or '-', and not 'api'");
  }
  if (static_cast<std::size_t>(c.threshold) > c.trusted_keys.size()) {
    return config_error("signing.threshold (" + c.sources.at("signing.threshold") + ")",
                        "is larger than the number of trusted keys");
  }
  return c;
}

std::string describe_config(const Config& c) {
  std::string out;
  for (const Spec& s : kSpecs) {
    out += std::string(s.doc.key) + " = ";
    std::visit(
        [&](auto member) {
          using Field = std::remove_cvref_t<decltype(c.*member)>;
          if constexpr (std::is_same_v<Field, std::int64_t>) {
            out += std::to_string(c.*member);
          } else if constexpr (std::is_same_v<Field, std::vector<fs::path>>) {
            out += "[";
            for (std::size_t i = 0; i < (c.*member).size(); ++i) {
              out += (i ? ", " : "") + toml_string((c.*member)[i].string());
            }
            out += "]";
          } else if constexpr (std::is_same_v<Field, fs::path>) {
            out += toml_string((c.*member).string());
          } else {
            out += toml_string(c.*member);
          }
        },
        s.target);
    out += "  # " + c.sources.at(std::string(s.doc.key)) + "\n";
  }
  return out;
}

}  // namespace fwdepot::cli
