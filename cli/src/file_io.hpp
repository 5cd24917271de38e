// SPDX-License-Identifier: Apache-2.0
// File helpers for the command line: bounded reads, streamed hashing, no-clobber writes.
#pragma once

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/error.hpp"

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace fwdepot::cli {

inline constexpr std::filesystem::perms kPrivateFileMode =
    std::filesystem::perms::owner_read | std::filesystem::perms::owner_write;
inline constexpr std::filesystem::perms kPublicFileMode =
    kPrivateFileMode | std::filesystem::perms::group_read | std::filesystem::perms::others_read;

/// Reads a whole file of at most `max_bytes`. Errors name the path and the reason.
[[nodiscard]] result<std::string> read_small_file(const std::filesystem::path& path,
                                                  std::size_t max_bytes = 1024 * 1024);

/// Calls `fn` with successive chunks of the file; stops at the first error `fn` returns.
[[nodiscard]] result<void> for_each_chunk(const std::filesystem::path& path,
                                          const std::function<result<void>(std::string_view)>& fn);

struct FileDigest {
  std::uint64_t size_bytes = 0;
  Sha256Digest sha256{};
};
/// Size and SHA-256 of a file, streamed in constant memory.
[[nodiscard]] result<FileDigest> hash_file(const std::filesystem::path& path);

/// Creates `path` with `contents` and `mode`, durably (fsync of file and directory) and
/// atomically (readers see all or nothing), and fails with "already exists" rather than
/// replace an existing file: the data is written to a temporary file that is then hard-linked
/// to its final name, and link(2) refuses to clobber.
[[nodiscard]] result<void> write_new_file(const std::filesystem::path& path,
                                          std::string_view contents, std::filesystem::perms mode);

/// Replaces (or creates) `path` atomically and durably: a reader sees the old or the new
/// contents, never a mix, whatever crashes. Used for files that are re-issued, like the CRL.
[[nodiscard]] result<void> replace_file(const std::filesystem::path& path,
                                        std::string_view contents, std::filesystem::perms mode);

}  // namespace fwdepot::cli
