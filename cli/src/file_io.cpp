// SPDX-License-Identifier: Apache-2.0
#include "file_io.hpp"

#include "fwdepot/core/openssl.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace fwdepot::cli {
namespace {

constexpr std::size_t kChunkBytes = 64 * 1024;

Error io_error(const std::filesystem::path& path, std::string_view what, int err) {
  return Error(boost::system::error_code(err, boost::system::system_category()),
               path.string() + ": " + std::string(what));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

result<void> for_each_chunk(const std::filesystem::path& path,
                            const std::function<result<void>(std::string_view)>& fn) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return io_error(path, "cannot open", errno);
  }
  std::vector<char> buf(kChunkBytes);
  while (true) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return io_error(path, "read failed", errno);
    }
    if (n == 0) {
      return {};
    }
    if (auto r = fn(std::string_view(buf.data(), static_cast<std::size_t>(n))); !r) {
      return r;
    }
  }
}

result<std::string> read_small_file(const std::filesystem::path& path, std::size_t max_bytes) {
  std::string out;
  auto r = for_each_chunk(path, [&](std::string_view chunk) -> result<void> {
    if (out.size() + chunk.size() > max_bytes) {
      return Error(core::error::document_too_large,
                   path.string() + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
    out.append(chunk);
    return {};
  });
  if (!r) {
    return r.error();
  }
  return out;
}

result<FileDigest> hash_file(const std::filesystem::path& path) {
  openssl::MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return Error(core::error::crypto_failure, openssl::drain_errors());
  }
  FileDigest out;
  auto r = for_each_chunk(path, [&](std::string_view chunk) -> result<void> {
    out.size_bytes += chunk.size();
    if (EVP_DigestUpdate(ctx.get(), chunk.data(), chunk.size()) != 1) {
      return Error(core::error::crypto_failure, openssl::drain_errors());
    }
    return {};
  });
  if (!r) {
    return r.error();
  }
  if (EVP_DigestFinal_ex(ctx.get(), out.sha256.data(), nullptr) != 1) {
    return Error(core::error::crypto_failure, openssl::drain_errors());
  }
  return out;
}

namespace {

// Writes `contents` to a fresh temporary file beside `path` and fsyncs it; returns its name.
result<std::filesystem::path> write_temp_beside(const std::filesystem::path& path,
                                                std::string_view contents,
                                                std::filesystem::perms mode) {
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  auto suffix = random_bytes(8);
  if (!suffix) {
    return suffix.error();
  }
  std::filesystem::path tmp =
      dir / ("." + path.filename().string() + ".tmp-" + hex_encode(*suffix));
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode)));
  if (fd.get() < 0) {
    return io_error(tmp, "cannot create", errno);
  }
  std::size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd.get(), contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return io_error(tmp, "write failed", err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return io_error(tmp, "fsync failed", err);
  }
  return tmp;
}

void fsync_parent(const std::filesystem::path& path) {
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() >= 0) {
    ::fsync(dfd.get());
  }
}

}  // namespace

result<void> write_new_file(const std::filesystem::path& path, std::string_view contents,
                            std::filesystem::perms mode) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    return io_error(path, "already exists; refusing to overwrite it", EEXIST);
  }
  auto tmp = write_temp_beside(path, contents, mode);
  if (!tmp) {
    return tmp.error();
  }
  // link(2), unlike rename(2), refuses to replace an existing file: the no-clobber check and the
  // creation are one atomic step.
  const int linked = ::link(tmp->c_str(), path.c_str());
  const int link_err = errno;
  ::unlink(tmp->c_str());
  if (linked != 0) {
    return io_error(
        path, link_err == EEXIST ? "already exists; refusing to overwrite it" : "cannot create",
        link_err);
  }
  fsync_parent(path);
  return {};
}

result<void> replace_file(const std::filesystem::path& path, std::string_view contents,
                          std::filesystem::perms mode) {
  auto tmp = write_temp_beside(path, contents, mode);
  if (!tmp) {
    return tmp.error();
  }
  if (::rename(tmp->c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp->c_str());
    return io_error(path, "cannot replace", err);
  }
  fsync_parent(path);
  return {};
}

}  // namespace fwdepot::cli
