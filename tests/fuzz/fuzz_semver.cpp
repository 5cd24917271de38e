// SPDX-License-Identifier: Apache-2.0
// SemVer parsing: whatever parses prints back to the same text, parses again to an equal
// version, and orders consistently against itself and against a fixed version.
#include "fuzz_target.hpp"
#include "fwdepot/core/semver.hpp"

using namespace fwdepot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto v = Version::parse(fuzz::text(data, size));
  if (!v) {
    return 0;
  }
  fuzz::check(v->to_string() == fuzz::text(data, size), "to_string() gives back the input");
  auto again = Version::parse(v->to_string());
  fuzz::check(again && (*again <=> *v) == 0, "a printed version parses to an equal one");
  static const Version pivot = Version::parse("1.2.3-rc.1").value();
  const auto a = *v <=> pivot;
  const auto b = pivot <=> *v;
  fuzz::check((a < 0 && b > 0) || (a > 0 && b < 0) || (a == 0 && b == 0), "antisymmetric order");
  return 0;
}
