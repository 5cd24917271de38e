// SPDX-License-Identifier: Apache-2.0
// Manifest payloads: whatever parses survives a round trip through its canonical JSON.
#include "fuzz_target.hpp"
#include "fwdepot/core/manifest.hpp"

using namespace fwdepot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto m = parse_manifest(fuzz::text(data, size));
  if (!m) {
    return 0;
  }
  auto again = parse_manifest(m->to_json());
  fuzz::check(again && *again == *m, "parse_manifest(to_json()) == manifest");
  return 0;
}
