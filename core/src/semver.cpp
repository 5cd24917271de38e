// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/semver.hpp"

#include <algorithm>
#include <charconv>

namespace fwdepot {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_identifier_char(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

bool all_digits(std::string_view s) { return std::all_of(s.begin(), s.end(), is_digit); }

Error invalid(std::string_view text, std::string_view why) {
  return Error(core::error::invalid_version, "'" + std::string(text) + "': " + std::string(why));
}

result<std::uint64_t> parse_number(std::string_view whole, std::string_view part,
                                   std::string_view name) {
  if (part.empty() || !all_digits(part)) {
    return invalid(whole, std::string(name) + " must be a non-negative integer");
  }
  if (part.size() > 1 && part.front() == '0') {
    return invalid(whole, std::string(name) + " must not have leading zeros");
  }
  std::uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
  if (ec != std::errc() || ptr != part.data() + part.size()) {
    return invalid(whole, std::string(name) + " is too large");
  }
  return value;
}

// Splits on '.' and checks each identifier; numeric pre-release identifiers may not have
// leading zeros, build identifiers may (SemVer items 9 and 10).
result<std::vector<std::string>> parse_identifiers(std::string_view whole, std::string_view part,
                                                   bool numeric_rules) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = part.find('.', start);
    const std::string_view id =
        part.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (id.empty()) {
      return invalid(whole, "empty identifier");
    }
    if (!std::all_of(id.begin(), id.end(), is_identifier_char)) {
      return invalid(whole, "identifiers may contain only [0-9A-Za-z-]");
    }
    if (numeric_rules && id.size() > 1 && id.front() == '0' && all_digits(id)) {
      return invalid(whole, "numeric pre-release identifiers must not have leading zeros");
    }
    out.emplace_back(id);
    if (dot == std::string_view::npos) {
      return out;
    }
    start = dot + 1;
  }
}

// Numeric identifiers compare numerically; comparing by length first avoids overflow for
// identifiers longer than 64 bits (there are no leading zeros, so longer means larger).
std::strong_ordering compare_identifier(const std::string& a, const std::string& b) {
  const bool a_num = all_digits(a);
  const bool b_num = all_digits(b);
  if (a_num && b_num) {
    if (a.size() != b.size()) {
      return a.size() <=> b.size();
    }
    return a.compare(b) <=> 0;
  }
  if (a_num != b_num) {
    return a_num ? std::strong_ordering::less : std::strong_ordering::greater;
  }
  return a.compare(b) <=> 0;
}

}  // namespace

result<Version> Version::parse(std::string_view text) {
  if (text.empty()) {
    return Error(core::error::invalid_version, "empty version");
  }
  if (text.size() > kMaxVersionBytes) {
    return Error(core::error::invalid_version,
                 "longer than " + std::to_string(kMaxVersionBytes) + " bytes");
  }
  Version v;
  std::string_view rest = text;
  if (const auto plus = rest.find('+'); plus != std::string_view::npos) {
    auto build = parse_identifiers(text, rest.substr(plus + 1), false);
    if (!build) {
      return build.error();
    }
    v.build_ = std::string(rest.substr(plus + 1));
    rest = rest.substr(0, plus);
  }
  if (const auto dash = rest.find('-'); dash != std::string_view::npos) {
    auto pre = parse_identifiers(text, rest.substr(dash + 1), true);
    if (!pre) {
      return pre.error();
    }
    v.prerelease_ = std::move(*pre);
    rest = rest.substr(0, dash);
  }
  const auto dot1 = rest.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : rest.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || rest.find('.', dot2 + 1) != std::string_view::npos) {
    return invalid(text, "expected MAJOR.MINOR.PATCH");
  }
  auto major = parse_number(text, rest.substr(0, dot1), "major");
  auto minor = parse_number(text, rest.substr(dot1 + 1, dot2 - dot1 - 1), "minor");
  auto patch = parse_number(text, rest.substr(dot2 + 1), "patch");
  for (auto* part : {&major, &minor, &patch}) {
    if (!*part) {
      return part->error();
    }
  }
  v.major_ = *major;
  v.minor_ = *minor;
  v.patch_ = *patch;
  return v;
}

std::string Version::to_string() const {
  std::string out =
      std::to_string(major_) + "." + std::to_string(minor_) + "." + std::to_string(patch_);
  for (std::size_t i = 0; i < prerelease_.size(); ++i) {
    out += i == 0 ? '-' : '.';
    out += prerelease_[i];
  }
  if (!build_.empty()) {
    out += '+';
    out += build_;
  }
  return out;
}

std::strong_ordering operator<=>(const Version& a, const Version& b) {
  if (auto c = a.major_ <=> b.major_; c != 0) {
    return c;
  }
  if (auto c = a.minor_ <=> b.minor_; c != 0) {
    return c;
  }
  if (auto c = a.patch_ <=> b.patch_; c != 0) {
    return c;
  }
  // A pre-release has lower precedence than the release itself.
  if (a.prerelease_.empty() != b.prerelease_.empty()) {
    return a.prerelease_.empty() ? std::strong_ordering::greater : std::strong_ordering::less;
  }
  const std::size_t n = std::min(a.prerelease_.size(), b.prerelease_.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (auto c = compare_identifier(a.prerelease_[i], b.prerelease_[i]); c != 0) {
      return c;
    }
  }
  return a.prerelease_.size() <=> b.prerelease_.size();
}

}  // namespace fwdepot
