// SPDX-License-Identifier: Apache-2.0
// Reading the JSON of an HTTP reply in a test: parse failures are test failures.
#pragma once

#include "support/server_fixture.hpp"

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <string>

namespace fwdepot::testing {

inline boost::json::value parse(const std::string& body) {
  std::error_code ec;
  auto v = boost::json::parse(body, ec);
  EXPECT_FALSE(ec) << "not JSON: " << body;
  return v;
}

/// The "code" of fwdepot's {"error": {"code", "message"}}, or a description of what came instead.
inline std::string error_code_of(const HttpReply& r) {
  auto v = parse(r.body);
  if (!v.is_object() || !v.as_object().contains("error")) {
    return "<no error object in " + r.body + ">";
  }
  return boost::json::value_to<std::string>(v.at("error").at("code"));
}

}  // namespace fwdepot::testing
