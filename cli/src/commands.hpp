// SPDX-License-Identifier: Apache-2.0
// The fwdepot subcommands, free of any argument-parsing library: main.cpp fills these option
// structs and calls the matching run_* function, which returns the process exit code.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace fwdepot::cli {

/// Prints "fwdepot: error: <message>" to stderr and returns `code`: every failure is one line.
int fail(const std::string& message, int code = 1);

struct KeysGenerateOptions {
  std::string type = "ecdsa-p256";
  std::filesystem::path out_prefix;
};
int run_keys_generate(const KeysGenerateOptions& o);

struct SignOptions {
  std::vector<std::filesystem::path> keys;
  std::optional<std::filesystem::path> key_password_file;
  std::string name;
  std::string version;
  std::vector<std::string> models;
  std::string description;
  std::filesystem::path image;
  std::filesystem::path out;
};
int run_sign(const SignOptions& o);

struct VerifyOptions {
  std::vector<std::filesystem::path> pubs;
  std::size_t threshold = 1;
  std::filesystem::path manifest;
  std::filesystem::path image;
};
int run_verify(const VerifyOptions& o);

}  // namespace fwdepot::cli
