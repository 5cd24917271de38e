// SPDX-License-Identifier: Apache-2.0
// The fwdepot subcommands, free of any argument-parsing library: main.cpp fills these option
// structs and calls the matching run_* function, which returns the process exit code.
#pragma once

#include "config.hpp"

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

struct InitOptions {
  std::filesystem::path data_dir;
  std::vector<std::string> server_names;  // default: localhost
  std::vector<std::string> ips;           // default: 127.0.0.1 and ::1
};
int run_init(const InitOptions& o);

struct IssueDeviceOptions {
  std::filesystem::path data_dir;
  std::string id;
  std::string model;
  std::filesystem::path out_prefix;
  int validity_days = 825;
};
int run_certs_issue_device(const IssueDeviceOptions& o);

struct RevokeOptions {
  std::filesystem::path data_dir;
  std::string id;
};
int run_certs_revoke(const RevokeOptions& o);

struct RenewServerOptions {
  std::filesystem::path data_dir;
  std::vector<std::string> server_names;  // default: the current certificate's
  std::vector<std::string> ips;           // default: the current certificate's
};
/// A new server key and certificate from the data directory's CA, each file replaced by a
/// rename (key first); a running server takes them on SIGHUP. If it stops between the two
/// renames, the key no longer matches the certificate: run it again.
int run_certs_renew_server(const RenewServerOptions& o);

struct TokenOptions {
  std::filesystem::path data_dir;
  std::string name;
  std::filesystem::path from_file;  // create: take the token from this file (a secret) instead
};
int run_token_create(const TokenOptions& o);
int run_token_revoke(const TokenOptions& o);

struct BackupOptions {
  std::filesystem::path data_dir;
  std::filesystem::path out;  // a directory, created
};
int run_backup(const BackupOptions& o);

struct RestoreOptions {
  std::filesystem::path from;  // a directory `fwdepot backup` wrote
  std::filesystem::path data_dir;
};
int run_restore(const RestoreOptions& o);

struct ServeOptions {
  std::filesystem::path data_dir;
  ConfigFlags flags;          // every configuration key has a flag; given ones win
  bool check_config = false;  // validate, print the effective configuration, exit
};
int run_serve(const ServeOptions& o);

}  // namespace fwdepot::cli
