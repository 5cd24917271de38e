// SPDX-License-Identifier: Apache-2.0
// A ready UpdateHandler for Linux devices that keep firmware in files: the package streams to
// DIR/firmware.partial (made durable every `sync_bytes`, with the durable length recorded next
// to it so that a restart resumes from bytes that are really on disk), and perform_upgrade()
// renames it to DIR/firmware.bin and records the new version in DIR/version, each step atomic.
// Applications that flash a partition write their own handler on the same pattern.
#pragma once

#include "fwdepot/client/handler.hpp"

#include <filesystem>

namespace fwdepot::client {

class FileUpdateHandler final : public UpdateHandler {
 public:
  /// `initial_version` is reported until DIR/version exists.
  FileUpdateHandler(std::filesystem::path dir, Version initial_version,
                    std::uint64_t sync_bytes = 1024 * 1024);
  ~FileUpdateHandler() override;
  FileUpdateHandler(const FileUpdateHandler&) = delete;
  FileUpdateHandler& operator=(const FileUpdateHandler&) = delete;

  Version current_version() override;
  result<std::uint64_t> stream_open(const PackageInfo& info, bool resume) override;
  result<void> stream_write(std::string_view bytes) override;
  result<std::size_t> read_stored(std::uint64_t offset, std::span<char> out) override;
  result<void> stream_finish() override;
  void reset() override;
  result<void> perform_upgrade() override;

  [[nodiscard]] std::filesystem::path firmware_path() const { return dir_ / "firmware.bin"; }

 private:
  result<void> sync();  // fsync the data, then record its length

  std::filesystem::path dir_;
  Version initial_version_;
  std::uint64_t sync_bytes_;
  int fd_ = -1;
  std::uint64_t written_ = 0;
  std::uint64_t synced_ = 0;
  std::string pending_version_;
};

}  // namespace fwdepot::client
