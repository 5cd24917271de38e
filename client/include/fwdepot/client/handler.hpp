// SPDX-License-Identifier: Apache-2.0
// What the application implements, in the shape of Anjay's anjay_fw_update_handlers_t: the
// library calls these to store a package, to install it, and to learn the running version.
#pragma once

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/error.hpp"
#include "fwdepot/core/semver.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace fwdepot::client {

/// The package being downloaded, from its verified manifest.
struct PackageInfo {
  std::int64_t image_id = 0;
  std::string name;
  Version version;
  std::uint64_t size = 0;
  Sha256Digest sha256{};
  std::string etag;  // the server's strong ETag for the payload
};

class UpdateHandler {
 public:
  virtual ~UpdateHandler() = default;

  /// The running firmware version. Called at the start of every cycle and after an upgrade.
  [[nodiscard]] virtual Version current_version() = 0;

  /// Opens storage for `info`. `resume` is true when the library recorded an unfinished
  /// download of this very package (same ETag): the handler then returns how many leading
  /// bytes it still holds durably, which read_stored() must give back (the library re-hashes
  /// them). Otherwise, or to start over, return 0 after discarding anything old.
  [[nodiscard]] virtual result<std::uint64_t> stream_open(const PackageInfo& info, bool resume) = 0;
  /// Appends payload bytes, in order. Never called with bytes that failed verification.
  [[nodiscard]] virtual result<void> stream_write(std::string_view bytes) = 0;
  /// Reads back stored bytes at `offset` (for resumption); returns how many were read.
  [[nodiscard]] virtual result<std::size_t> read_stored(std::uint64_t offset,
                                                        std::span<char> out) = 0;
  /// All bytes arrived and verified: make them durable.
  [[nodiscard]] virtual result<void> stream_finish() = 0;
  /// Discards whatever stream_open/stream_write stored. Must not fail.
  virtual void reset() = 0;
  /// Installs the finished package. Returning means the new firmware runs (current_version()
  /// reports it) or will run after a reboot the application performs.
  [[nodiscard]] virtual result<void> perform_upgrade() = 0;
};

}  // namespace fwdepot::client
