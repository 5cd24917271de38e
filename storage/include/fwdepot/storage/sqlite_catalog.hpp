// SPDX-License-Identifier: Apache-2.0
// The SQLite backend of the catalog: one database file in WAL mode.
#pragma once

#include "fwdepot/storage/catalog.hpp"

#include <chrono>
#include <filesystem>
#include <memory>

struct sqlite3;

namespace fwdepot::storage {

class SqliteCatalog final : public Catalog {
 public:
  struct Options {
    int busy_timeout_ms = 5000;  // how long a write waits for another writer's lock
    // How long find_offer answers from the offers it holds in memory before it checks the
    // file's offer revision again. Changes through this object apply at once; changes other
    // connections or processes write apply within this time.
    std::chrono::milliseconds offer_recheck{1000};
  };

  /// Opens (creating if needed) the database and migrates it forward to the current schema.
  /// Errors: error::corrupt (not a database), error::schema_too_new, error::io_error, busy.
  [[nodiscard]] static result<std::unique_ptr<SqliteCatalog>> open(
      const std::filesystem::path& path, const Options& options);
  [[nodiscard]] static result<std::unique_ptr<SqliteCatalog>> open(
      const std::filesystem::path& path) {
    return open(path, Options{});
  }

  /// The schema version this build writes (PRAGMA user_version after open()).
  static int current_schema_version();

  /// Writes a consistent copy of the whole database to the new file `to` with SQLite's online
  /// backup API, in one step: the copy is one snapshot, while other connections (the server)
  /// keep reading and writing (WAL). Errors: error::conflict (`to` exists), error::io_error,
  /// error::no_space, error::busy.
  [[nodiscard]] result<void> backup_to(const std::filesystem::path& to);
  /// PRAGMA integrity_check. Errors: error::corrupt with SQLite's first complaint.
  [[nodiscard]] result<void> check_integrity();

  /// "ok", or what PRAGMA integrity_check found.
  [[nodiscard]] result<std::string> integrity_check();

  ~SqliteCatalog() override;
  SqliteCatalog(const SqliteCatalog&) = delete;
  SqliteCatalog& operator=(const SqliteCatalog&) = delete;

  // A catalog object is used by one thread at a time; a server gives each thread its own or
  // serialises access. SQLite itself arbitrates between processes.
  result<std::int64_t> insert_image(const NewImage& image) override;
  result<ImageRecord> find_image(std::int64_t id) override;
  result<std::vector<ImageRecord>> list_images() override;
  result<void> delete_image(std::int64_t id) override;
  result<std::uint64_t> count_images_with_blob(const Sha256Digest& d) override;
  result<std::vector<Sha256Digest>> referenced_blobs() override;
  result<std::vector<RecordedCheckin>> record_checkins(std::span<const DeviceCheckin> batch,
                                                       std::int64_t now) override;
  result<std::int64_t> append_event(const DeviceEvent& e) override;
  result<DeviceRecord> find_device(std::string_view id) override;
  result<DevicePage> list_devices(const DeviceQuery& q) override;
  result<std::vector<DeviceEvent>> list_events(std::string_view device_id,
                                               const EventQuery& q) override;
  result<FleetStats> fleet_stats(std::size_t failures) override;
  result<std::int64_t> create_deployment(const NewDeployment& d) override;
  result<std::vector<DeploymentRecord>> list_deployments() override;
  result<void> cancel_deployment(std::int64_t id, std::int64_t now) override;
  result<DeploymentProgress> deployment_progress(std::int64_t id) override;
  result<std::shared_ptr<const Offer>> find_offer(std::string_view device_id,
                                                  std::string_view model) override;
  result<std::int64_t> create_token(std::string_view name, std::string_view token_sha256_hex,
                                    std::int64_t now) override;
  result<AdminToken> find_live_token(std::string_view token_sha256_hex) override;
  result<void> revoke_token(std::string_view name, std::int64_t now) override;
  result<std::vector<AdminToken>> list_tokens() override;
  result<void> put_psk(const PskCredential& psk, std::int64_t now) override;
  result<PskCredential> find_psk(std::string_view identity) override;
  result<void> delete_psk(std::string_view device_id) override;
  result<void> record_certificate(const IssuedCertificate& c) override;
  result<std::size_t> revoke_certificates(std::string_view device_id, std::int64_t now) override;
  result<std::vector<IssuedCertificate>> revoked_certificates() override;
  result<void> set_artifact_fields(std::int64_t id, std::string_view filename,
                                   std::string_view sha1_hex, std::string_view md5_hex) override;
  result<DeviceRecord> touch_device(std::string_view id, std::string_view model,
                                    std::int64_t now) override;
  result<void> put_attributes(std::string_view device_id, std::string_view attributes_json,
                              std::int64_t now) override;
  result<ActionRecord> open_action(std::string_view device_id, std::int64_t deployment_id,
                                   std::int64_t now) override;
  result<ActionRecord> find_action(std::int64_t id) override;
  result<void> request_action_cancel(std::int64_t id, std::int64_t now) override;
  result<std::vector<ActionRecord>> active_actions(std::string_view device_id) override;
  result<DeviceRecord> record_action_update(const ActionUpdate& u) override;

  class Impl;  // opaque: keeps sqlite3 out of this header

 private:
  explicit SqliteCatalog(std::unique_ptr<Impl> impl);
  // One check-in of a batch, inside the batch's transaction; an error fails the whole batch.
  result<RecordedCheckin> record_one_checkin(const DeviceCheckin& c, std::int64_t now);
  result<void> touch_last_seen(std::string_view device_id, std::int64_t now);
  // The rows of one check-in, inside a transaction the caller holds.
  result<void> write_checkin(const DeviceCheckin& c, const std::optional<DeviceRecord>& before,
                             std::int64_t now);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fwdepot::storage
