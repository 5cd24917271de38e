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
  keys_gen->add_option("--type", keys_generate.type,
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
  verify_cmd->add_option("--threshold", verify.threshold,
                         "Distinct trusted keys that must have signed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  verify_cmd->add_option("--manifest", verify.manifest, "The DSSE manifest")->required();
  verify_cmd->add_option("image", verify.image, "The firmware image")->required();
  verify_cmd->callback([&] { exit_code = run_verify(verify); });

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
