// SPDX-License-Identifier: Apache-2.0
// Semantic Versioning 2.0.0 (https://semver.org): parsing and precedence.
#pragma once

#include "fwdepot/core/error.hpp"

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fwdepot {

/// Longest version string accepted; real versions are far shorter, and a bound keeps the
/// comparison cost of hostile input small.
inline constexpr std::size_t kMaxVersionBytes = 128;

class Version {
 public:
  /// 0.0.0, the version of a device that has never installed anything.
  Version() = default;

  /// Parses MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] exactly as SemVer 2.0.0 spells it: no leading
  /// zeros in numeric parts, no empty identifiers, no "v" prefix, components up to 2^64-1.
  /// Errors: core::error::invalid_version with the reason.
  [[nodiscard]] static result<Version> parse(std::string_view text);

  [[nodiscard]] std::uint64_t major() const { return major_; }
  [[nodiscard]] std::uint64_t minor() const { return minor_; }
  [[nodiscard]] std::uint64_t patch() const { return patch_; }
  [[nodiscard]] const std::vector<std::string>& prerelease() const { return prerelease_; }
  [[nodiscard]] const std::string& build() const { return build_; }

  /// The canonical text (identical to what parse() accepted).
  [[nodiscard]] std::string to_string() const;

  /// SemVer precedence (section 11). Build metadata does not take part, so 1.0.0+a and 1.0.0+b
  /// are equivalent, not equal: use to_string() to tell them apart.
  friend std::strong_ordering operator<=>(const Version& a, const Version& b);
  friend bool operator==(const Version& a, const Version& b) { return (a <=> b) == 0; }

 private:
  std::uint64_t major_ = 0;
  std::uint64_t minor_ = 0;
  std::uint64_t patch_ = 0;
  std::vector<std::string> prerelease_;
  std::string build_;
};

}  // namespace fwdepot
