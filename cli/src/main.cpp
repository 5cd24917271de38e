// SPDX-License-Identifier: Apache-2.0
// fwdepot: the operator's and release engineer's command line.
#include "commands.hpp"

#include <CLI/CLI.hpp>

#include <iostream>

namespace fwdepot::cli {

int fail(const std::string& message, int code) {
  std::cerr << "fwdepot: error: " << message << "\n";
  return code;
}

}  // namespace fwdepot::cli

int main(int argc, char** argv) {
  using namespace fwdepot::cli;
  CLI::App app{"fwdepot: secure firmware distribution server and release tools"};
  // Repeatable options take one value per occurrence, so "--model a IMAGE" never eats IMAGE.
  app.require_subcommand(1);
  app.set_version_flag("--version", "fwdepot 0.1.0");
  int exit_code = 0;

  auto* keys = app.add_subcommand("keys", "Manage release signing keys");
  keys->require_subcommand(1);
  KeysGenerateOptions keys_generate;
  auto* keys_gen = keys->add_subcommand("generate", "Generate a signing key pair");
  keys_gen
      ->add_option("--type", keys_generate.type,
                   "ecdsa-p256 (default), ed25519, rsa-2048, rsa-3072, rsa-pss-2048 or "
                   "rsa-pss-3072 (rsa-* sign with PKCS#1 v1.5, rsa-pss-* with PSS)")
      ->capture_default_str();
  keys_gen->add_option("--out", keys_generate.out_prefix, "Writes PREFIX.key and PREFIX.pub")
      ->required();
  keys_gen->callback([&] { exit_code = run_keys_generate(keys_generate); });

  SignOptions sign;
  auto* sign_cmd = app.add_subcommand("sign", "Sign a firmware image, writing a DSSE manifest");
  sign_cmd->add_option("--key", sign.keys, "Private key (repeat for several signatures)")
      ->required()
      ->allow_extra_args(false);
  sign_cmd->add_option("--key-password-file", sign.key_password_file,
                       "File holding the password of encrypted keys");
  sign_cmd->add_option("--name", sign.name, "Image name")->required();
  sign_cmd->add_option("--version", sign.version, "SemVer 2.0 version")->required();
  sign_cmd->add_option("--model", sign.models, "Compatible device model (repeatable)")
      ->required()
      ->allow_extra_args(false);
  sign_cmd->add_option("--description", sign.description, "Free text for operators");
  sign_cmd->add_option("image", sign.image, "The firmware image")->required();
  sign_cmd->add_option("--out", sign.out, "Where to write the signed manifest")->required();
  sign_cmd->callback([&] { exit_code = run_sign(sign); });

  VerifyOptions verify;
  auto* verify_cmd =
      app.add_subcommand("verify", "Verify a signed manifest and image (exit 0 if valid)");
  verify_cmd->add_option("--pub", verify.pubs, "Trusted public key (repeatable)")
      ->required()
      ->allow_extra_args(false);
  verify_cmd
      ->add_option("--threshold", verify.threshold, "Distinct trusted keys that must have signed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  verify_cmd->add_option("--manifest", verify.manifest, "The DSSE manifest")->required();
  verify_cmd->add_option("image", verify.image, "The firmware image")->required();
  verify_cmd->callback([&] { exit_code = run_verify(verify); });

  InitOptions init;
  auto* init_cmd = app.add_subcommand(
      "init", "Create a data directory: development PKI, signing key, config, database");
  init_cmd->add_option("--data", init.data_dir, "Data directory")->required();
  init_cmd
      ->add_option("--server-name", init.server_names,
                   "DNS name for the server certificate (repeatable; default localhost)")
      ->allow_extra_args(false);
  init_cmd
      ->add_option("--ip", init.ips,
                   "IP address for the server certificate (repeatable; default 127.0.0.1 "
                   "and ::1 when no name is given)")
      ->allow_extra_args(false);
  init_cmd->callback([&] { exit_code = run_init(init); });

  auto* certs =
      app.add_subcommand("certs", "Issue and revoke device certificates; renew the server's");
  certs->require_subcommand(1);
  IssueDeviceOptions issue;
  auto* issue_cmd = certs->add_subcommand("issue-device", "Issue a device certificate and key");
  issue_cmd->add_option("--data", issue.data_dir, "Data directory")->required();
  issue_cmd->add_option("--id", issue.id, "Device id (becomes the certificate CN)")->required();
  issue_cmd->add_option("--model", issue.model, "Device model (recorded in the certificate)");
  issue_cmd->add_option("--out", issue.out_prefix, "Writes PREFIX.pem and PREFIX.key")->required();
  issue_cmd->add_option("--days", issue.validity_days, "Validity in days")
      ->capture_default_str()
      ->check(CLI::Range(1, 36500));
  issue_cmd->callback([&] { exit_code = run_certs_issue_device(issue); });
  RevokeOptions revoke;
  auto* revoke_cmd =
      certs->add_subcommand("revoke", "Revoke a device's certificates and re-sign the CRL");
  revoke_cmd->add_option("--data", revoke.data_dir, "Data directory")->required();
  revoke_cmd->add_option("--id", revoke.id, "Device id")->required();
  revoke_cmd->callback([&] { exit_code = run_certs_revoke(revoke); });
  RenewServerOptions renew;
  auto* renew_cmd = certs->add_subcommand(
      "renew-server",
      "Replace the server's key and certificate with new ones from the CA (SIGHUP the server)");
  renew_cmd->add_option("--data", renew.data_dir, "Data directory")->required();
  renew_cmd->add_option("--server-name", renew.server_names,
                        "DNS name for the certificate (repeatable; default: the current ones)");
  renew_cmd->add_option("--ip", renew.ips,
                        "IP address for the certificate (repeatable; default: the current ones)");
  renew_cmd->callback([&] { exit_code = run_certs_renew_server(renew); });

  auto* token = app.add_subcommand("token", "Manage admin API tokens");
  token->require_subcommand(1);
  TokenOptions token_opts;
  auto* token_create = token->add_subcommand("create", "Create a token and print it once");
  token_create->add_option("--data", token_opts.data_dir, "Data directory")->required();
  token_create->add_option("--name", token_opts.name, "Who or what the token is for")->required();
  token_create->add_option("--from-file", token_opts.from_file,
                           "Take the token from this file (e.g. a container secret); print "
                           "nothing");
  token_create->callback([&] { exit_code = run_token_create(token_opts); });
  auto* token_revoke = token->add_subcommand("revoke", "Revoke a token by name");
  token_revoke->add_option("--data", token_opts.data_dir, "Data directory")->required();
  token_revoke->add_option("--name", token_opts.name, "The token's name")->required();
  token_revoke->callback([&] { exit_code = run_token_revoke(token_opts); });

  BackupOptions backup;
  auto* backup_cmd = app.add_subcommand(
      "backup", "Copy a data directory consistently, also while the server runs");
  backup_cmd->add_option("--data", backup.data_dir, "Data directory")->required();
  backup_cmd->add_option("--out", backup.out, "Backup directory to create")->required();
  backup_cmd->callback([&] { exit_code = run_backup(backup); });
  RestoreOptions restore;
  auto* restore_cmd =
      app.add_subcommand("restore", "Verify a backup and restore it into a fresh data directory");
  restore_cmd->add_option("--from", restore.from, "Backup directory")->required();
  restore_cmd->add_option("--data", restore.data_dir, "New data directory (absent or empty)")
      ->required();
  restore_cmd->callback([&] { exit_code = run_restore(restore); });

  ServeOptions serve;
  auto* serve_cmd = app.add_subcommand("serve", "Run the HTTPS device and admin listeners");
  serve_cmd->add_option("--data", serve.data_dir, "Data directory")->required();
  serve_cmd->add_flag("--check-config", serve.check_config,
                      "Validate the configuration and its files, print it, and exit");
  // One flag per configuration key (docs/configuration.md); given flags win over FWDEPOT_*
  // variables and the file.
  std::map<std::string, std::vector<std::string>> given;
  for (const auto& k : config_keys()) {
    auto* opt = serve_cmd->add_option("--" + std::string(k.flag), given[std::string(k.key)],
                                      std::string(k.help) + " [" + std::string(k.key) + "]");
    opt->allow_extra_args(false);
  }
  serve_cmd->callback([&] {
    for (auto& [key, values] : given) {
      if (!values.empty()) {
        serve.flags[key] = std::move(values);
      }
    }
    exit_code = run_serve(serve);
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0; real ones are one line on stderr.
    if (e.get_exit_code() == 0) {
      return app.exit(e);
    }
    return fail(e.what(), 2);
  }
  return exit_code;
}
