// SPDX-License-Identifier: Apache-2.0
// What the update driver must remember across restarts, in one JSON file in the state
// directory, replaced atomically (write aside, fsync, rename, fsync the directory).
#pragma once

#include "fwdepot/core/error.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace fwdepot::client {

struct PersistentState {
  struct Download {
    std::int64_t image_id = 0;
    std::string etag;  // the validator the stored bytes came under
    std::string version;
  };
  std::optional<Download> download;            // an unfinished download
  std::optional<std::string> pending_version;  // installed, not yet reported
  std::optional<std::string> last_result;      // LwM2M result, repeated until the next update
  std::optional<std::string> last_message;
};

/// A missing file is the empty state. Errors: a file that is not ours (invalid_argument).
[[nodiscard]] result<PersistentState> load_state(const std::filesystem::path& dir);
[[nodiscard]] result<void> save_state(const std::filesystem::path& dir, const PersistentState& s);

}  // namespace fwdepot::client
