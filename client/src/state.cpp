// SPDX-License-Identifier: Apache-2.0
#include "state.hpp"

#include "fwdepot/client/error.hpp"
#include "fwdepot/core/json.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <boost/json.hpp>

#include <cerrno>
#include <fstream>
#include <sstream>

namespace fwdepot::client {
namespace {

namespace json = boost::json;
constexpr const char* kFile = "fwdepot-client.json";

Error io_error(const std::filesystem::path& p, std::string_view what) {
  return Error(boost::system::error_code(errno, boost::system::system_category()),
               std::string(what) + " " + p.string());
}

result<void> fsync_path(const std::filesystem::path& p, int flags) {
  const int fd = ::open(p.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    return io_error(p, "open");
  }
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) {
    return io_error(p, "fsync");
  }
  return {};
}

}  // namespace

result<PersistentState> load_state(const std::filesystem::path& dir) {
  const auto file = dir / kFile;
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return PersistentState{};
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  auto parsed = parse_json_strict(ss.str(), {.max_bytes = 64 * 1024, .max_depth = 3});
  if (!parsed || !parsed->is_object()) {
    return Error(error::invalid_argument, file.string() + ": not a state file");
  }
  const json::object& o = parsed->as_object();
  PersistentState s;
  auto str = [&](const json::object& from, const char* key) -> std::optional<std::string> {
    const json::value* v = from.if_contains(key);
    return v && v->is_string() ? std::optional<std::string>(std::string(v->as_string()))
                               : std::nullopt;
  };
  if (const json::value* d = o.if_contains("download"); d && d->is_object()) {
    const auto& dl = d->as_object();
    const json::value* id = dl.if_contains("image_id");
    auto etag = str(dl, "etag");
    auto version = str(dl, "version");
    if (id && id->is_int64() && etag && version) {
      s.download = PersistentState::Download{id->as_int64(), *etag, *version};
    }
  }
  s.pending_version = str(o, "pending_version");
  s.last_result = str(o, "last_result");
  s.last_message = str(o, "last_message");
  return s;
}

result<void> save_state(const std::filesystem::path& dir, const PersistentState& s) {
  json::object o;
  if (s.download) {
    o["download"] = json::object{{"image_id", s.download->image_id},
                                 {"etag", s.download->etag},
                                 {"version", s.download->version}};
  }
  if (s.pending_version) {
    o["pending_version"] = *s.pending_version;
  }
  if (s.last_result) {
    o["last_result"] = *s.last_result;
  }
  if (s.last_message) {
    o["last_message"] = *s.last_message;
  }
  const std::string text = json::serialize(o);
  const auto file = dir / kFile;
  const auto tmp = dir / (std::string(kFile) + ".tmp");
  {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      return io_error(tmp, "create");
    }
    const ssize_t n = ::write(fd, text.data(), text.size());
    const bool ok = n == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) {
      return io_error(tmp, "write");
    }
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    return io_error(file, "rename");
  }
  return fsync_path(dir, O_RDONLY | O_DIRECTORY);
}

}  // namespace fwdepot::client
