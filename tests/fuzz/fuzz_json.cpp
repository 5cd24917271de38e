// SPDX-License-Identifier: Apache-2.0
// The strict JSON parser: no crash on any input, and whatever it accepts it accepts again once
// serialized, as the same value. Doubles are compared to within rounding: Boost.JSON 1.81
// parses decimal exponents without correct rounding ("11e33" comes back one ulp off), and our
// documents carry no doubles that matter (sizes are integers).
#include "fuzz_target.hpp"
#include "fwdepot/core/json.hpp"

#include <boost/json.hpp>

#include <cmath>

using namespace fwdepot;
namespace json = boost::json;

namespace {

bool same(const json::value& a, const json::value& b) {
  if (a.is_double() || b.is_double()) {
    if (!a.is_double() || !b.is_double()) {
      return false;
    }
    const double x = a.get_double();
    const double y = b.get_double();
    return x == y || std::fabs(x - y) <= 1e-15 * std::max(std::fabs(x), std::fabs(y));
  }
  if (a.kind() != b.kind()) {
    return false;
  }
  if (a.is_array()) {
    const auto& p = a.get_array();
    const auto& q = b.get_array();
    if (p.size() != q.size()) {
      return false;
    }
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (!same(p[i], q[i])) {
        return false;
      }
    }
    return true;
  }
  if (a.is_object()) {
    const auto& p = a.get_object();
    const auto& q = b.get_object();
    if (p.size() != q.size()) {
      return false;
    }
    for (const auto& [key, value] : p) {
      const json::value* other = q.if_contains(key);
      if (other == nullptr || !same(value, *other)) {
        return false;
      }
    }
    return true;
  }
  return a == b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const JsonLimits limits{.max_bytes = 64 * 1024, .max_depth = 16};
  auto v = parse_json_strict(fuzz::text(data, size), limits);
  if (!v) {
    return 0;
  }
  const std::string printed = json::serialize(*v);
  auto again = parse_json_strict(printed, {.max_bytes = printed.size() + 1, .max_depth = 16});
  fuzz::check(again.has_value(), "serialized JSON is JSON");
  fuzz::check(same(*again, *v), "serialized JSON parses back to the same value");
  return 0;
}
