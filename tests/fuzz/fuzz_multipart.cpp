// SPDX-License-Identifier: Apache-2.0
// The streaming multipart parser: the first input byte picks a chunk size, the rest is the body.
// Fed whole and fed in chunks, it must reach the same verdict with the same parts and bytes.
#include "fuzz_target.hpp"
#include "service/multipart.hpp"

#include <string>
#include <vector>

using namespace fwdepot;

namespace {

struct Outcome {
  bool ok = false;
  std::vector<std::string> parts;  // "name=bytes" per part
};

Outcome run(std::string_view body, std::size_t chunk) {
  Outcome out;
  server::MultipartParser parser("XyZ-boundary",
                                 {.on_part_begin =
                                      [&](std::string_view name, std::string_view) {
                                        out.parts.push_back(std::string(name) + "=");
                                        return result<void>();
                                      },
                                  .on_part_data =
                                      [&](std::string_view bytes) {
                                        out.parts.back() += bytes;
                                        return result<void>();
                                      },
                                  .on_part_end = [] { return result<void>(); }});
  bool ok = true;
  for (std::size_t at = 0; ok && at < body.size(); at += chunk) {
    ok = static_cast<bool>(parser.feed(body.substr(at, chunk)));
  }
  out.ok = ok && parser.finish();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::size_t chunk = 1 + data[0] % 64;
  const std::string_view body = fuzz::text(data + 1, size - 1);
  const Outcome whole = run(body, body.size() + 1);
  const Outcome pieces = run(body, chunk);
  fuzz::check(whole.ok == pieces.ok, "the verdict does not depend on the chunking");
  if (whole.ok) {
    fuzz::check(whole.parts == pieces.parts, "the parts do not depend on the chunking");
  }
  return 0;
}
