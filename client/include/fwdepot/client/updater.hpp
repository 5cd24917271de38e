// SPDX-License-Identifier: Apache-2.0
// The update driver: check in, verify the offer against the device's own trust anchors, stream
// the payload through the verifier into the handler (resuming where a download stopped), install
// it, and report every state change to the server.
#pragma once

#include "fwdepot/client/error.hpp"
#include "fwdepot/client/handler.hpp"
#include "fwdepot/client/security.hpp"
#include "fwdepot/core/keys.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fwdepot::client {

struct RetryPolicy {
  unsigned attempts = 5;                   // per network step, the first one included
  std::chrono::milliseconds initial{500};  // first backoff; doubles each time
  std::chrono::milliseconds max{30'000};   // backoff ceiling
  // Each wait is uniformly random in [backoff/2, backoff] ("equal jitter"), so a fleet that
  // lost its server together does not come back in lockstep.
};

struct UpdaterOptions {
  /// "https://host:port" of the device listener (check-ins go to /api/v1/device/checkin, and
  /// payloads come from the offer's https URL), or "coaps://host:port" of the CoAPS listener
  /// (check-ins go to /checkin, payloads come block-wise from the offer's coaps URL).
  std::string server_uri;
  std::string model;
  /// Release keys this device trusts, and how many distinct ones must have signed.
  std::vector<PublicKey> trusted_keys;
  std::size_t threshold = 1;
  /// Accept an offer of a lower version when the server's deployment also allows it.
  bool allow_downgrade = false;
  /// The device's own credentials: used for the server URI and every download URI unless
  /// get_security_config says otherwise.
  SecurityConfig security;
  SecurityConfigProvider get_security_config;
  /// Where the library keeps what must survive a restart (an unfinished download's ETag, an
  /// installed-but-unreported update). One small JSON file, replaced atomically.
  std::filesystem::path state_dir;

  std::chrono::milliseconds connect_timeout{10'000};  // resolve + TCP + TLS handshake
  std::chrono::milliseconds io_timeout{30'000};       // longest silence while reading or writing
  std::size_t coaps_block_size = 1024;                // CoAPS Block2 size: 16, 32, ... 1024
  std::chrono::milliseconds coaps_ack_timeout{2000};  // CoAPS first retransmission: 1 to 60 s
  RetryPolicy retry;
  /// Called as payload bytes are stored: (bytes so far, total).
  std::function<void(std::uint64_t, std::uint64_t)> on_progress;
};

enum class Outcome {
  no_update,        // nothing offered (or the offer is already installed)
  updated,          // installed, running, and reported as success
  upgrade_pending,  // installed; the new firmware runs after the application reboots
  failed,           // refused or failed; `error` says why and the server has been told
};

struct CycleReport {
  Outcome outcome = Outcome::no_update;
  Version version;                   // running version at the end of the cycle
  std::optional<Version> offered;    // the offered version, if any
  std::optional<Error> error;        // for Outcome::failed
  std::uint64_t resumed_from = 0;    // payload bytes that were already stored at the start
  bool tls_session_resumed = false;  // the download needed no full handshake (a resumed TLS
                                     // session, or the check-in's DTLS session still open)
};

class Updater {
 public:
  /// Errors: error::invalid_argument (missing model, keys, threshold, state dir),
  /// error::invalid_uri, error::unsupported_protocol.
  [[nodiscard]] static result<std::unique_ptr<Updater>> create(UpdaterOptions options,
                                                               UpdateHandler& handler);
  ~Updater();

  /// One cycle: report any update installed by the previous cycle, check in, and act on the
  /// offer. Network failures are retried with backoff; what still fails is in the report.
  /// Errors (rather than a report) only when the server cannot be reached at all to check in.
  [[nodiscard]] result<CycleReport> run_once();

 private:
  struct Impl;
  explicit Updater(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fwdepot::client
