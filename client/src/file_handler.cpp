// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/client/file_handler.hpp"

#include "fwdepot/client/error.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace fwdepot::client {
namespace {

Error os_error(std::string_view what, const std::filesystem::path& p) {
  const int e = errno;
  const auto code = e == ENOSPC ? make_error_code(error::not_enough_storage)
                                : make_error_code(error::update_failed);
  return Error(code, std::string(what) + " " + p.string() + ": " + std::strerror(e));
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `text` to `p` atomically and durably.
result<void> write_atomic(const std::filesystem::path& p, std::string_view text) {
  const auto tmp = p.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return os_error("create", tmp);
  }
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), p.c_str()) != 0) {
    return os_error("write", p);
  }
  const int dir = ::open(p.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return {};
}

}  // namespace

FileUpdateHandler::FileUpdateHandler(std::filesystem::path dir, Version initial_version,
                                     std::uint64_t sync_bytes)
    : dir_(std::move(dir)), initial_version_(std::move(initial_version)), sync_bytes_(sync_bytes) {}

FileUpdateHandler::~FileUpdateHandler() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Version FileUpdateHandler::current_version() {
  std::string text = read_text(dir_ / "version");
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  auto v = Version::parse(text);
  return v ? *v : initial_version_;
}

result<std::uint64_t> FileUpdateHandler::stream_open(const PackageInfo& info, bool resume) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  pending_version_ = info.version.to_string();
  const auto partial = dir_ / "firmware.partial";
  std::uint64_t durable = 0;
  if (resume) {
    // Only what a completed sync() recorded counts: a crash may have left more bytes, or
    // garbage, past it.
    const std::string text = read_text(dir_ / "firmware.partial.length");
    std::from_chars(text.data(), text.data() + text.size(), durable);
  }
  fd_ = ::open(partial.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    return os_error("open", partial);
  }
  if (::ftruncate(fd_, static_cast<off_t>(durable)) != 0 ||
      ::lseek(fd_, static_cast<off_t>(durable), SEEK_SET) < 0) {
    return os_error("truncate", partial);
  }
  written_ = synced_ = durable;
  return durable;
}

result<void> FileUpdateHandler::stream_write(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return os_error("write", dir_ / "firmware.partial");
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
    written_ += static_cast<std::uint64_t>(n);
  }
  return written_ - synced_ >= sync_bytes_ ? sync() : result<void>();
}

result<void> FileUpdateHandler::sync() {
  if (::fsync(fd_) != 0) {
    return os_error("fsync", dir_ / "firmware.partial");
  }
  synced_ = written_;
  return write_atomic(dir_ / "firmware.partial.length", std::to_string(synced_));
}

result<std::size_t> FileUpdateHandler::read_stored(std::uint64_t offset, std::span<char> out) {
  const ssize_t n = ::pread(fd_, out.data(), out.size(), static_cast<off_t>(offset));
  if (n < 0) {
    return os_error("read", dir_ / "firmware.partial");
  }
  return static_cast<std::size_t>(n);
}

result<void> FileUpdateHandler::stream_finish() { return sync(); }

void FileUpdateHandler::reset() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  std::error_code ec;
  std::filesystem::remove(dir_ / "firmware.partial", ec);
  std::filesystem::remove(dir_ / "firmware.partial.length", ec);
  written_ = synced_ = 0;
}

result<void> FileUpdateHandler::perform_upgrade() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  const auto partial = dir_ / "firmware.partial";
  if (::rename(partial.c_str(), firmware_path().c_str()) != 0) {
    return os_error("install", firmware_path());
  }
  std::error_code ec;
  std::filesystem::remove(dir_ / "firmware.partial.length", ec);
  // The marker: the version file says what firmware.bin is, and changes last.
  return write_atomic(dir_ / "version", pending_version_ + "\n");
}

}  // namespace fwdepot::client
