// SPDX-License-Identifier: Apache-2.0
// The catalog: everything fwdepot knows except image bytes. An abstract interface, because a
// PostgreSQL backend will sit beside SQLite when fwdepot scales out; callers never see SQL.
//
// All times are unix seconds supplied by the caller. Every method may also fail with
// error::busy, error::io_error, error::no_space or error::corrupt from the backend; only the
// errors specific to a method are listed with it. A failed call changes nothing.
#pragma once

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/error.hpp"
#include "fwdepot/storage/error.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace fwdepot::storage {

struct NewImage {
  std::string name;
  std::string version;  // SemVer text as signed
  std::vector<std::string> models;
  std::uint64_t size_bytes = 0;
  Sha256Digest sha256{};
  std::string envelope;  // the DSSE envelope JSON exactly as uploaded
  std::vector<std::string> signer_key_ids;
  std::string description;
  std::int64_t created_at = 0;  // upload time
  std::string filename;         // as uploaded (the multipart part's filename), for DDI's artifacts
  std::string sha1_hex;         // hashes hawkBit agents check besides SHA-256; lowercase hex
  std::string md5_hex;          // (both empty until computed after the upload)

  [[nodiscard]] bool has_artifact_hashes() const { return !sha1_hex.empty() && !md5_hex.empty(); }
};

struct ImageRecord : NewImage {
  std::int64_t id = 0;
};

struct DeviceCheckin {
  std::string device_id;
  std::string model;
  std::string version;
  std::string state;                   // LwM2M state name: idle, downloading, ...
  std::optional<std::string> result;   // LwM2M result name of the last update, if reported
  std::optional<std::string> message;  // free text from the device, stored as text
  std::optional<std::int64_t> offered_image_id;  // what the answer offers; kept in the event
};

struct DeviceRecord {
  std::string id;
  std::string model;
  std::string version;
  std::string state;
  std::optional<std::string> last_result;
  std::optional<std::string> last_message;
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;
  std::string attributes = "{}";  // a JSON object of strings the device reported (DDI configData)
};

/// One check-in of a batch as recorded: the device before it (nullopt at its first check-in).
using RecordedCheckin = result<std::optional<DeviceRecord>>;

struct DeviceEvent {
  std::int64_t id = 0;
  std::string device_id;
  std::int64_t at = 0;
  std::string kind;  // "checkin", "state", "offer", ...
  std::string state;
  std::string version;
  std::optional<std::string> result;
  std::optional<std::string> message;
  std::optional<std::int64_t> image_id;  // checkin: the image offered in the answer
};

struct DeviceQuery {
  std::optional<std::string> model;
  std::optional<std::string> version;
  std::optional<std::string> state;
  std::optional<std::string> id_prefix;  // search
  enum class Sort { id, last_seen, version, model, state } sort = Sort::id;
  bool descending = false;
  std::size_t limit = 50;  // capped at kMaxPageSize
  std::size_t offset = 0;
};
inline constexpr std::size_t kMaxPageSize = 1000;

/// A page of one device's history. Oldest first from after `cursor` (0: the start), or newest
/// first from before `cursor` (0: the end).
struct EventQuery {
  bool newest_first = false;
  std::int64_t cursor = 0;
  std::size_t limit = 100;  // capped at kMaxPageSize
};

struct DevicePage {
  std::vector<DeviceRecord> devices;
  std::uint64_t total = 0;  // matching devices over all pages
};

/// How a device is to apply a deployment, in hawkBit's terms: forced (download and install at
/// once), soft (the device may ask its user first), download-only (download, never install).
enum class ActionType { forced, soft, download_only };
[[nodiscard]] std::string_view to_string(ActionType t);  // "forced", "soft", "downloadonly"
[[nodiscard]] std::optional<ActionType> parse_action_type(std::string_view s);

struct NewDeployment {
  std::int64_t image_id = 0;
  std::vector<std::string> devices;  // device-level targets
  std::vector<std::string> models;   // model-level targets
  bool allow_downgrade = false;
  std::int64_t created_at = 0;
  ActionType action_type = ActionType::forced;
};

struct DeploymentRecord : NewDeployment {
  std::int64_t id = 0;
  std::optional<std::int64_t> cancelled_at;
};

struct Offer {
  DeploymentRecord deployment;
  ImageRecord image;
};

/// One deployment offered to one device over DDI (hawkBit's "action"). open: offered and not
/// finished; canceling: the deployment was cancelled and the device has yet to confirm;
/// closed: the device reported the end (success or failure); canceled: the device confirmed the
/// cancellation.
enum class ActionStatus { open, canceling, closed, canceled };
[[nodiscard]] std::string_view to_string(ActionStatus s);

struct ActionRecord {
  std::int64_t id = 0;
  std::int64_t deployment_id = 0;
  std::string device_id;
  std::int64_t image_id = 0;  // the deployment's
  ActionType type = ActionType::forced;
  ActionStatus status = ActionStatus::open;
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
};

/// What one piece of device feedback changes, applied together: the action's status, the
/// device's state, version and last result, and one event in its history.
struct ActionUpdate {
  std::int64_t action_id = 0;
  ActionStatus expected = ActionStatus::open;  // the status the caller saw; else error::conflict
  ActionStatus status = ActionStatus::open;
  DeviceEvent event;  // device_id, at, kind, state, version, result, message, image_id
};

struct AdminToken {
  std::int64_t id = 0;
  std::string name;
  std::int64_t created_at = 0;
  std::optional<std::int64_t> revoked_at;
};

struct PskCredential {
  std::string device_id;
  std::string identity;
  std::string key;  // raw key bytes; never log
};

struct IssuedCertificate {
  std::string serial_hex;
  std::string device_id;
  std::string model;
  std::int64_t issued_at = 0;
  std::int64_t not_after = 0;
  std::optional<std::int64_t> revoked_at;
};

/// The fleet at a glance.
struct FleetStats {
  std::int64_t devices = 0;
  std::vector<std::pair<std::string, std::int64_t>> by_version;  // most devices first
  std::vector<std::pair<std::string, std::int64_t>> by_model;
  std::vector<std::pair<std::string, std::int64_t>> by_state;
  std::vector<DeviceRecord> recent_failures;  // last result a failure, newest first
};

/// Where the devices a deployment targets stand (devices known to the catalog only).
struct DeploymentProgress {
  std::int64_t targeted = 0;
  std::int64_t at_version = 0;   // run the deployment's image version
  std::int64_t in_progress = 0;  // downloading, downloaded or updating
  std::int64_t failed = 0;       // not at the version, and their last result is a failure
};

class Catalog {
 public:
  virtual ~Catalog() = default;

  // --- images ---
  /// Adds an image row and returns its id. Callers commit the blob first (see image_store.hpp).
  /// Errors: error::conflict if name+version exists.
  [[nodiscard]] virtual result<std::int64_t> insert_image(const NewImage& image) = 0;
  /// Errors: error::not_found.
  [[nodiscard]] virtual result<ImageRecord> find_image(std::int64_t id) = 0;
  /// Newest first.
  [[nodiscard]] virtual result<std::vector<ImageRecord>> list_images() = 0;
  /// Removes the row and its cancelled deployments. Errors: error::not_found, error::in_use
  /// while a deployment that is not cancelled targets it.
  [[nodiscard]] virtual result<void> delete_image(std::int64_t id) = 0;
  /// How many image rows reference a blob (blobs are shared between equal payloads).
  [[nodiscard]] virtual result<std::uint64_t> count_images_with_blob(const Sha256Digest& d) = 0;
  /// Completes an image from before uploads recorded a file name, SHA-1 and MD5.
  /// Errors: error::not_found.
  [[nodiscard]] virtual result<void> set_artifact_fields(std::int64_t id, std::string_view filename,
                                                         std::string_view sha1_hex,
                                                         std::string_view md5_hex) = 0;
  /// Every blob digest some image row references.
  [[nodiscard]] virtual result<std::vector<Sha256Digest>> referenced_blobs() = 0;

  // --- devices and their history ---
  /// Records `batch` in order, in one transaction with one commit (one fsync for the lot).
  /// Each check-in registers its device on first sight, updates its model, version, state and
  /// result and its last_seen, and appends a "checkin" event unless it repeats the device's
  /// last one. Each is its own savepoint: one that fails is rolled back alone and reports its
  /// error in its slot, and the others stand. An error for the whole call (the transaction
  /// could not begin or commit) means none was recorded.
  [[nodiscard]] virtual result<std::vector<RecordedCheckin>> record_checkins(
      std::span<const DeviceCheckin> batch, std::int64_t now) = 0;
  /// One check-in, recorded as record_checkins does; returns the device after it.
  [[nodiscard]] result<DeviceRecord> record_checkin(const DeviceCheckin& c, std::int64_t now);
  /// Appends an event to an existing device. Errors: error::not_found.
  [[nodiscard]] virtual result<std::int64_t> append_event(const DeviceEvent& e) = 0;
  /// Errors: error::not_found.
  [[nodiscard]] virtual result<DeviceRecord> find_device(std::string_view id) = 0;
  [[nodiscard]] virtual result<DevicePage> list_devices(const DeviceQuery& q) = 0;
  /// At most `q.limit` events past the cursor, in the query's order.
  [[nodiscard]] virtual result<std::vector<DeviceEvent>> list_events(std::string_view device_id,
                                                                     const EventQuery& q) = 0;
  /// A device seen by a protocol that does not report its version (DDI polls): registered on
  /// first sight with an empty version, state idle and a "registered" event; otherwise only its
  /// last_seen moves. Returns the record.
  [[nodiscard]] virtual result<DeviceRecord> touch_device(std::string_view id,
                                                          std::string_view model,
                                                          std::int64_t now) = 0;
  /// Replaces the device's attributes (a JSON object, already validated). Errors:
  /// error::not_found.
  [[nodiscard]] virtual result<void> put_attributes(std::string_view device_id,
                                                    std::string_view attributes_json,
                                                    std::int64_t now) = 0;
  /// Counts per version, model and state, and the `failures` newest failed devices.
  [[nodiscard]] virtual result<FleetStats> fleet_stats(std::size_t failures) = 0;

  // --- deployments ---
  /// Errors: error::not_found (no such image), error::invalid_argument (no targets).
  [[nodiscard]] virtual result<std::int64_t> create_deployment(const NewDeployment& d) = 0;
  /// Newest first, cancelled ones included.
  [[nodiscard]] virtual result<std::vector<DeploymentRecord>> list_deployments() = 0;
  /// Also moves the deployment's open DDI actions to canceling, in the same transaction.
  /// Errors: error::not_found (no such deployment, or already cancelled).
  [[nodiscard]] virtual result<void> cancel_deployment(std::int64_t id, std::int64_t now) = 0;
  /// Errors: error::not_found.
  [[nodiscard]] virtual result<DeploymentProgress> deployment_progress(std::int64_t id) = 0;
  /// The deployment that applies to this device: a device-level target wins over a model-level
  /// one, and the newest wins at the same level; cancelled deployments never apply. Version
  /// and rollback checks are the caller's. Returns nullptr when nothing applies. The
  /// deployment comes without its target lists (list_deployments has them): it is asked for on
  /// every check-in, and a deployment may name thousands of devices. The offer is shared and
  /// never changes: a change to the deployments or images makes new ones, so a caller may
  /// keep what it derives from one for as long as it holds it.
  [[nodiscard]] virtual result<std::shared_ptr<const Offer>> find_offer(std::string_view device_id,
                                                                        std::string_view model) = 0;

  // --- DDI actions ---
  /// The action of this deployment for this device, created open on first call. Errors:
  /// error::not_found (no such device or deployment).
  [[nodiscard]] virtual result<ActionRecord> open_action(std::string_view device_id,
                                                         std::int64_t deployment_id,
                                                         std::int64_t now) = 0;
  /// Errors: error::not_found.
  [[nodiscard]] virtual result<ActionRecord> find_action(std::int64_t id) = 0;
  /// Asks the device to stop an open action (a newer deployment supersedes it): it becomes
  /// canceling. Errors: error::not_found (no such action), error::conflict (not open).
  [[nodiscard]] virtual result<void> request_action_cancel(std::int64_t id, std::int64_t now) = 0;
  /// The device's actions that are open or canceling, oldest first.
  [[nodiscard]] virtual result<std::vector<ActionRecord>> active_actions(
      std::string_view device_id) = 0;
  /// Applies one piece of feedback in one transaction and returns the device afterwards.
  /// Errors: error::not_found (no such action or device), error::conflict (the action's
  /// status is no longer `expected`).
  [[nodiscard]] virtual result<DeviceRecord> record_action_update(const ActionUpdate& u) = 0;

  // --- admin tokens (only SHA-256 hashes are stored) ---
  /// Errors: error::conflict (a live token with that name, or that hash, exists).
  [[nodiscard]] virtual result<std::int64_t> create_token(std::string_view name,
                                                          std::string_view token_sha256_hex,
                                                          std::int64_t now) = 0;
  /// The live (unrevoked) token with this hash. Errors: error::not_found.
  [[nodiscard]] virtual result<AdminToken> find_live_token(std::string_view token_sha256_hex) = 0;
  /// Errors: error::not_found (no live token of that name).
  [[nodiscard]] virtual result<void> revoke_token(std::string_view name, std::int64_t now) = 0;
  [[nodiscard]] virtual result<std::vector<AdminToken>> list_tokens() = 0;

  // --- CoAPS pre-shared keys ---
  /// Sets (or replaces) a device's PSK. Errors: error::conflict (identity used by another).
  [[nodiscard]] virtual result<void> put_psk(const PskCredential& psk, std::int64_t now) = 0;
  /// Errors: error::not_found.
  [[nodiscard]] virtual result<PskCredential> find_psk(std::string_view identity) = 0;
  /// Errors: error::not_found.
  [[nodiscard]] virtual result<void> delete_psk(std::string_view device_id) = 0;

  // --- issued device certificates, for revocation by device id ---
  /// Errors: error::conflict (serial already recorded).
  [[nodiscard]] virtual result<void> record_certificate(const IssuedCertificate& c) = 0;
  /// Marks every unrevoked certificate of the device revoked; returns how many.
  /// Errors: error::not_found (the device never had a certificate).
  [[nodiscard]] virtual result<std::size_t> revoke_certificates(std::string_view device_id,
                                                                std::int64_t now) = 0;
  /// Every revoked certificate, oldest revocation first (the CRL's contents).
  [[nodiscard]] virtual result<std::vector<IssuedCertificate>> revoked_certificates() = 0;
};

}  // namespace fwdepot::storage
