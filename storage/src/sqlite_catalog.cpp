// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/storage/sqlite_catalog.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>
#include <boost/json.hpp>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <type_traits>
#include <unordered_map>

namespace fwdepot::storage {
namespace {

struct DbClose {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct StmtFinalize {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using DbPtr = std::unique_ptr<sqlite3, DbClose>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalize>;

// Forward-only migrations: entry i takes user_version i to i+1. Never edit a shipped entry;
// append a new one.
constexpr std::array<const char*, 3> kMigrations = {
    R"sql(
CREATE TABLE images(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  models TEXT NOT NULL,                 -- JSON array of strings
  size_bytes INTEGER NOT NULL CHECK (size_bytes > 0),
  sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
  envelope TEXT NOT NULL,               -- DSSE envelope as uploaded
  signer_key_ids TEXT NOT NULL,         -- JSON array of strings
  description TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  UNIQUE (name, version)
);
CREATE INDEX images_sha256 ON images(sha256);

CREATE TABLE devices(
  id TEXT PRIMARY KEY,
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  state TEXT NOT NULL,
  last_result TEXT,
  last_message TEXT,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX devices_model ON devices(model, id);
CREATE INDEX devices_version ON devices(version, id);
CREATE INDEX devices_state ON devices(state, id);
CREATE INDEX devices_last_seen ON devices(last_seen, id);

CREATE TABLE device_events(
  id INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  at INTEGER NOT NULL,
  kind TEXT NOT NULL,
  state TEXT NOT NULL,
  version TEXT NOT NULL,
  result TEXT,
  message TEXT,
  image_id INTEGER
);
CREATE INDEX device_events_device ON device_events(device_id, id);

CREATE TABLE deployments(
  id INTEGER PRIMARY KEY,
  image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  allow_downgrade INTEGER NOT NULL CHECK (allow_downgrade IN (0, 1)),
  created_at INTEGER NOT NULL,
  cancelled_at INTEGER
);
CREATE INDEX deployments_image ON deployments(image_id);

CREATE TABLE deployment_targets(
  deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('device', 'model')),
  value TEXT NOT NULL,
  PRIMARY KEY (deployment_id, kind, value)
) WITHOUT ROWID;
CREATE INDEX deployment_targets_value ON deployment_targets(kind, value);

CREATE TABLE admin_tokens(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  token_sha256 TEXT NOT NULL UNIQUE CHECK (length(token_sha256) = 64),
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE UNIQUE INDEX admin_tokens_live_name ON admin_tokens(name) WHERE revoked_at IS NULL;

CREATE TABLE psk_credentials(
  device_id TEXT PRIMARY KEY,
  identity TEXT NOT NULL UNIQUE,
  key BLOB NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE device_certificates(
  serial TEXT PRIMARY KEY,
  device_id TEXT NOT NULL,
  model TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  not_after INTEGER NOT NULL,
  revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX device_certificates_device ON device_certificates(device_id);
)sql",
    // 2: hawkBit DDI. Artifact file names and the SHA-1 and MD5 that DDI agents check (images
    // from before are filled in at start from their blobs: see backfill_artifact_hashes), device
    // attributes, deployment action types, and one action per deployment and device.
    R"sql(
ALTER TABLE images ADD COLUMN filename TEXT NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN sha1 TEXT NOT NULL DEFAULT '' CHECK (sha1 = '' OR length(sha1) = 40);
ALTER TABLE images ADD COLUMN md5 TEXT NOT NULL DEFAULT '' CHECK (md5 = '' OR length(md5) = 32);
ALTER TABLE devices ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
ALTER TABLE deployments ADD COLUMN action_type TEXT NOT NULL DEFAULT 'forced'
  CHECK (action_type IN ('forced', 'soft', 'downloadonly'));

CREATE TABLE ddi_actions(
  id INTEGER PRIMARY KEY,
  deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
  device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  status TEXT NOT NULL CHECK (status IN ('open', 'canceling', 'closed', 'canceled')),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (deployment_id, device_id)
);
CREATE INDEX ddi_actions_device ON ddi_actions(device_id, status);
)sql",
    // 3: a revision of everything find_offer reads (deployments, their targets, images), bumped
    // by triggers, so that the offers a server keeps in memory know when they are stale, whoever
    // changed the file.
    R"sql(
CREATE TABLE offer_revision(rev INTEGER NOT NULL);
INSERT INTO offer_revision(rev) VALUES (0);
CREATE TRIGGER offer_rev_deployment_insert AFTER INSERT ON deployments
  BEGIN UPDATE offer_revision SET rev = rev + 1; END;
CREATE TRIGGER offer_rev_deployment_update AFTER UPDATE ON deployments
  BEGIN UPDATE offer_revision SET rev = rev + 1; END;
CREATE TRIGGER offer_rev_deployment_delete AFTER DELETE ON deployments
  BEGIN UPDATE offer_revision SET rev = rev + 1; END;
CREATE TRIGGER offer_rev_target_insert AFTER INSERT ON deployment_targets
  BEGIN UPDATE offer_revision SET rev = rev + 1; END;
CREATE TRIGGER offer_rev_target_update AFTER UPDATE ON deployment_targets
  BEGIN UPDATE offer_revision SET rev = rev + 1; END;
CREATE TRIGGER offer_rev_target_delete AFTER DELETE ON deployment_targets
  BEGIN UPDATE offer_revision SET rev = rev + 1; END;
CREATE TRIGGER offer_rev_image_update AFTER UPDATE ON images
  BEGIN UPDATE offer_revision SET rev = rev + 1; END;
CREATE TRIGGER offer_rev_image_delete AFTER DELETE ON images
  BEGIN UPDATE offer_revision SET rev = rev + 1; END;
)sql",
};

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "fwdepot.storage"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::ok:
        return "success";
      case error::not_found:
        return "not found";
      case error::conflict:
        return "already exists";
      case error::in_use:
        return "in use";
      case error::busy:
        return "database busy";
      case error::corrupt:
        return "storage corrupt";
      case error::io_error:
        return "storage I/O error";
      case error::no_space:
        return "no space left";
      case error::invalid_argument:
        return "invalid argument";
      case error::schema_too_new:
        return "database schema is newer than this fwdepot";
    }
    return "unknown fwdepot.storage error";
  }
};

// Converts an SQLite result code to our error, at the one place where codes leave SQLite.
Error sqlite_error(sqlite3* db, int rc, std::string_view what) {
  std::string detail =
      std::string(what) + ": " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Error(error::busy, std::move(detail));
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return Error(error::conflict, std::move(detail));
      }
      if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        return Error(error::not_found, std::move(detail));
      }
      return Error(error::invalid_argument, std::move(detail));
    case SQLITE_FULL:
      return Error(error::no_space, std::move(detail));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Error(error::corrupt, std::move(detail));
    default:
      return Error(error::io_error, std::move(detail));
  }
}

std::string to_json_array(const std::vector<std::string>& items) {
  boost::json::array a;
  for (const auto& s : items) {
    a.emplace_back(s);
  }
  return boost::json::serialize(a);
}

std::vector<std::string> from_json_array(std::string_view text) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(text, ec);
  if (!ec && v.is_array()) {
    for (const auto& item : v.get_array()) {
      if (item.is_string()) {
        out.emplace_back(item.get_string());
      }
    }
  }
  return out;
}

// A cached statement in use: binds parameters, steps, reads columns, and resets itself when it
// goes out of scope so that the cache can hand it out again.
class Query {
 public:
  Query(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  Query(Query&& o) noexcept : db_(o.db_), stmt_(std::exchange(o.stmt_, nullptr)) {}
  ~Query() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  Query& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Query& bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  /// Binds `v` without a copy: its bytes must outlive this Query (which unbinds them when it
  /// goes). For the check-in path, where the copies were a malloc each.
  Query& bind_ref(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Query& bind_ref_opt(int i, const std::optional<std::string>& v) {
    return v ? bind_ref(i, std::string_view(*v)) : bind_null(i);
  }
  Query& bind_blob(int i, std::string_view v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Query& bind_opt(int i, const std::optional<std::string>& v) {
    return v ? bind(i, std::string_view(*v)) : bind_null(i);
  }
  Query& bind_opt(int i, const std::optional<std::int64_t>& v) {
    return v ? bind(i, *v) : bind_null(i);
  }
  Query& bind_null(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }

  /// True when a row is available, false when done.
  [[nodiscard]] result<bool> step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc == SQLITE_DONE) {
      return false;
    }
    return sqlite_error(db_, sqlite3_extended_errcode(db_), "step");
  }
  /// Runs a statement that returns no rows.
  [[nodiscard]] result<void> run() {
    auto r = step();
    if (!r) {
      return r.error();
    }
    return {};
  }

  std::int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
                        : std::string();
  }
  std::string blob(int col) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
                        : std::string();
  }
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::optional<std::string> opt_text(int col) const {
    return is_null(col) ? std::nullopt : std::optional<std::string>(text(col));
  }
  std::optional<std::int64_t> opt_int64(int col) const {
    return is_null(col) ? std::nullopt : std::optional<std::int64_t>(int64(col));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

// Reads every remaining row of `q` with `read`.
template <class Read>
auto collect(Query& q, Read read) -> result<std::vector<decltype(read(q))>> {
  std::vector<decltype(read(q))> out;
  while (true) {
    auto row = q.step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return out;
    }
    out.push_back(read(q));
  }
}

// Reads the single row a lookup by key yields, or fails with the error `missing()` builds (only
// then: a lookup that finds its row builds no message).
template <class Read, class Missing>
requires std::is_invocable_r_v<Error, Missing>
auto single(Query& q, Read read, Missing missing) -> result<decltype(read(q))> {
  auto row = q.step();
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return missing();
  }
  return read(q);
}

constexpr const char* kImageColumns =
    "id, name, version, models, size_bytes, sha256, envelope, signer_key_ids, description, "
    "created_at, filename, sha1, md5";

ImageRecord read_image(const Query& q, int first = 0) {
  ImageRecord r;
  r.id = q.int64(first);
  r.name = q.text(first + 1);
  r.version = q.text(first + 2);
  r.models = from_json_array(q.text(first + 3));
  r.size_bytes = static_cast<std::uint64_t>(q.int64(first + 4));
  if (auto d = parse_sha256_hex(q.text(first + 5))) {
    r.sha256 = *d;
  }
  r.envelope = q.text(first + 6);
  r.signer_key_ids = from_json_array(q.text(first + 7));
  r.description = q.text(first + 8);
  r.created_at = q.int64(first + 9);
  r.filename = q.text(first + 10);
  r.sha1_hex = q.text(first + 11);
  r.md5_hex = q.text(first + 12);
  return r;
}

constexpr const char* kDeviceColumns =
    "id, model, version, state, last_result, last_message, first_seen, last_seen, attributes";

DeviceRecord read_device(const Query& q) {
  return DeviceRecord{q.text(0),     q.text(1),  q.text(2),  q.text(3), q.opt_text(4),
                      q.opt_text(5), q.int64(6), q.int64(7), q.text(8)};
}

// The two decisions of a check-in that write_checkin and the memo below both make.
// Whether check-in `c` leaves the device's row as it is, but for last_seen.
bool leaves_row(const DeviceRecord& row, const DeviceCheckin& c) {
  return row.model == c.model && row.version == c.version && row.state == c.state &&
         (!c.result || c.result == row.last_result) &&
         (!c.message || c.message == row.last_message);
}

// A device's last event, when it is a check-in; `c` adds no event when it says the same. It
// refers to the fields it is made of: make it from named values, never from temporaries.
struct LastCheckin {
  std::string_view state;
  std::string_view version;
  const std::optional<std::string>& result;
  const std::optional<std::string>& message;
  std::optional<std::int64_t> image_id;

  bool repeated_by(const DeviceCheckin& c) const {
    return state == c.state && version == c.version && result == c.result && message == c.message &&
           image_id == c.offered_image_id;
  }
};

// What this connection's check-ins last wrote for the devices it saw, so that a check-in that
// brings nothing new (a device polling while nothing happens) is decided without reading the
// device's row and its last event: two queries that were most of the writer's work. Trusted
// only while nothing else has written: no other connection (PRAGMA data_version, read inside
// the batch's write transaction) and no other statement on this one (total_changes).
class CheckinMemo {
 public:
  static constexpr std::size_t kMaxDevices = 16384;  // about 5 MiB when full; then it starts over

  struct Device {
    DeviceRecord row;  // as stored
    // The device's last event, which is always its last check-in: state and version are the
    // row's, the rest is what that check-in reported.
    std::optional<std::string> result;
    std::optional<std::string> message;
    std::optional<std::int64_t> image_id;
  };

  /// Drops everything unless the database is as this memo left it. `data_version` is read in
  /// the current transaction.
  void check(sqlite3* db, std::int64_t data_version) {
    if (data_version != data_version_ || sqlite3_total_changes64(db) != changes_) {
      devices_.clear();
      data_version_ = data_version;
    }
  }
  /// After the batch committed (or failed: `ok` false), what the next check() compares.
  void settle(sqlite3* db, bool ok) {
    if (!ok) {
      devices_.clear();
    }
    changes_ = sqlite3_total_changes64(db);
  }

  /// The device of `c` when `c` changes nothing but its last_seen: the same model, version and
  /// state, no new result or message, and the same event as the last one.
  Device* repeated_by(const DeviceCheckin& c) {
    auto it = devices_.find(std::string_view(c.device_id));
    if (it == devices_.end()) {
      return nullptr;
    }
    Device& d = it->second;
    const LastCheckin last{d.row.state, d.row.version, d.result, d.message, d.image_id};
    return leaves_row(d.row, c) && last.repeated_by(c) ? &d : nullptr;
  }

  /// Records what write_checkin stored for `c` over `before`.
  void remember(const DeviceCheckin& c, const std::optional<DeviceRecord>& before,
                std::int64_t now) {
    if (devices_.size() >= kMaxDevices && !devices_.contains(std::string_view(c.device_id))) {
      devices_.clear();
    }
    Device& d = devices_[c.device_id];
    if (before) {
      d.row = *before;
    } else {
      d.row = DeviceRecord{};
      d.row.id = c.device_id;
      d.row.first_seen = now;
    }
    d.row.model = c.model;
    d.row.version = c.version;
    d.row.state = c.state;
    if (c.result) {
      d.row.last_result = c.result;
    }
    if (c.message) {
      d.row.last_message = c.message;
    }
    d.row.last_seen = now;
    d.result = c.result;
    d.message = c.message;
    d.image_id = c.offered_image_id;
  }

  void forget(std::string_view device_id) {
    if (auto it = devices_.find(device_id); it != devices_.end()) {
      devices_.erase(it);
    }
  }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Device, Hash, std::equal_to<>> devices_;
  std::int64_t data_version_ = -1;
  std::int64_t changes_ = -1;
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

class SqliteCatalog::Impl {
 public:
  explicit Impl(DbPtr db) : db_(std::move(db)) {}

  sqlite3* db() const { return db_.get(); }

  /// A cached prepared statement for `sql` (a string literal or otherwise stable text).
  [[nodiscard]] result<Query> query(std::string_view sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* raw = nullptr;
      const int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                                        SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
      StmtPtr stmt(raw);
      if (rc != SQLITE_OK) {
        return sqlite_error(db_.get(), rc, "prepare");
      }
      it = cache_.emplace(sql, std::move(stmt)).first;
    }
    return Query(db_.get(), it->second.get());
  }

  /// Runs a cached statement that returns no rows: for the transaction statements that every
  /// write runs, which sqlite3_exec would parse again each time.
  [[nodiscard]] result<void> run(std::string_view sql) {
    auto q = query(sql);
    return q ? q->run() : result<void>(q.error());
  }

  [[nodiscard]] result<void> exec(const char* sql) {
    char* msg = nullptr;
    const int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &msg);
    sqlite3_free(msg);
    if (rc != SQLITE_OK) {
      return sqlite_error(db_.get(), sqlite3_extended_errcode(db_.get()), "exec");
    }
    return {};
  }

  /// What find_offer answers from: the active deployments, newest first, with their images,
  /// and which of them applies to a device or a model. Loaded when offer_revision moves.
  struct Offers {
    std::int64_t rev = -1;  // -1: not loaded, or changed by this connection
    std::chrono::steady_clock::time_point checked;
    std::vector<std::shared_ptr<const Offer>> offers;  // deployments without their targets
    std::map<std::string, std::size_t, std::less<>> by_device;
    std::map<std::string, std::size_t, std::less<>> by_model;
  };
  Offers offers;
  std::chrono::milliseconds offer_recheck{1000};
  CheckinMemo checkins;

  /// Runs a query expected to return one integer.
  [[nodiscard]] result<std::int64_t> scalar(std::string_view sql) {
    auto q = query(sql);
    if (!q) {
      return q.error();
    }
    auto row = q->step();
    if (!row) {
      return row.error();
    }
    return *row ? q->int64(0) : 0;
  }

 private:
  DbPtr db_;
  // Looked up by the SQL text, without making a string of it each time.
  struct SqlHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view sql) const {
      return std::hash<std::string_view>{}(sql);
    }
  };
  std::unordered_map<std::string, StmtPtr, SqlHash, std::equal_to<>> cache_;
};

namespace {

// BEGIN IMMEDIATE takes the write lock up front, so a transaction never fails half-way on a
// lock upgrade; an uncommitted transaction rolls back when this goes out of scope.
class Transaction {
 public:
  [[nodiscard]] static result<Transaction> begin(SqliteCatalog::Impl& impl);
  Transaction(Transaction&& o) noexcept : impl_(std::exchange(o.impl_, nullptr)) {}
  Transaction(const Transaction&) = delete;
  ~Transaction() {
    if (impl_ != nullptr) {
      (void)impl_->run("ROLLBACK");
    }
  }
  [[nodiscard]] result<void> commit() {
    auto r = impl_->run("COMMIT");
    if (r) {
      impl_ = nullptr;
    }
    return r;
  }

 private:
  explicit Transaction(SqliteCatalog::Impl* impl) : impl_(impl) {}
  SqliteCatalog::Impl* impl_;
};

result<Transaction> Transaction::begin(SqliteCatalog::Impl& impl) {
  if (auto r = impl.run("BEGIN IMMEDIATE"); !r) {
    return r.error();
  }
  return Transaction(&impl);
}

}  // namespace

// --- open and migrate -------------------------------------------------------------------------

namespace {

// The catalog holds secrets (CoAPS pre-shared keys), so its file is the owner's alone: created
// 0600, and group and other bits dropped from an existing one. SQLite gives its -wal and -shm
// files the database file's mode. An existing file is changed by path, never opened: closing
// any descriptor of a file drops every POSIX lock the process holds on it, so a second
// connection opened in a process (the check-in writer's) would silently take away the first
// one's locks, and another process would then take itself for the last user and delete the WAL.
result<void> make_private(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return Error(error::io_error, "opening " + path.string() + ": " + std::strerror(errno));
    }
    const int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return Error(error::io_error, "creating " + path.string() + ": " + std::strerror(errno));
    }
    ::close(fd);
    return {};
  }
  if ((st.st_mode & 077) != 0 && ::chmod(path.c_str(), st.st_mode & 0700) != 0) {
    return Error(error::io_error, "restricting " + path.string() + ": " + std::strerror(errno));
  }
  return {};
}

}  // namespace

SqliteCatalog::SqliteCatalog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SqliteCatalog::~SqliteCatalog() = default;

int SqliteCatalog::current_schema_version() { return static_cast<int>(kMigrations.size()); }

result<std::unique_ptr<SqliteCatalog>> SqliteCatalog::open(const std::filesystem::path& path,
                                                           const Options& options) {
  if (auto r = make_private(path); !r) {
    return r.error();
  }
  // No bulk allocation for new page caches. By default SQLite gives every page cache about
  // 20 pages up front, and a query that sorts (find_offer's ORDER BY) opens a temporary B-tree
  // with a page cache of its own: some 90 KiB malloc'ed and freed per query, which glibc
  // returns to the kernel each time. Page faults and TLB flushes were half of a check-in's CPU
  // on the serving thread. Process-wide, so set once, before SQLite initializes; it fails
  // harmlessly (SQLITE_MISUSE) if something else initialized SQLite first.
  static const bool no_bulk_page_cache [[maybe_unused]] =
      sqlite3_config(SQLITE_CONFIG_PAGECACHE, nullptr, 0, 0) == SQLITE_OK;
  // No allocation statistics either: they take a process-wide mutex on every one of SQLite's
  // allocations, and Debian's SQLite has no lookaside, so a check-in makes dozens of them.
  static const bool no_memory_statistics [[maybe_unused]] =
      sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  DbPtr db(raw);  // sqlite3_open_v2 hands back a handle even on failure: own it first
  if (rc != SQLITE_OK) {
    return sqlite_error(db.get(), rc, "opening " + path.string());
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), options.busy_timeout_ms);
  auto impl = std::make_unique<Impl>(std::move(db));
  impl->offer_recheck = options.offer_recheck;

  // WAL lets readers go on while one writer commits. synchronous=FULL makes every commit
  // durable before it returns: the catalog records which firmware a fleet runs, and losing the
  // last commits on power failure would be worse than the fsync it costs.
  for (const char* pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    if (auto r = impl->exec(pragma); !r) {
      return Error(r.error().code, path.string() + ": " + r.error().detail);
    }
  }
  auto version = impl->scalar("PRAGMA user_version");
  if (!version) {
    return version.error();
  }
  if (*version > current_schema_version()) {
    return Error(error::schema_too_new, path.string() + " has schema " + std::to_string(*version) +
                                            ", this fwdepot knows up to " +
                                            std::to_string(current_schema_version()));
  }
  for (auto v = static_cast<std::size_t>(*version); v < kMigrations.size(); ++v) {
    auto tx = Transaction::begin(*impl);
    if (!tx) {
      return tx.error();
    }
    if (auto r = impl->exec(kMigrations[v]); !r) {
      return Error(r.error().code, "migration " + std::to_string(v + 1) + ": " + r.error().detail);
    }
    const std::string bump = "PRAGMA user_version=" + std::to_string(v + 1);
    if (auto r = impl->exec(bump.c_str()); !r) {
      return r.error();
    }
    if (auto r = tx->commit(); !r) {
      return r.error();
    }
  }
  return std::unique_ptr<SqliteCatalog>(new SqliteCatalog(std::move(impl)));
}

result<std::string> SqliteCatalog::integrity_check() {
  auto q = impl_->query("PRAGMA integrity_check");
  if (!q) {
    return q.error();
  }
  std::string out;
  while (true) {
    auto row = q->step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      break;
    }
    out += (out.empty() ? "" : "\n") + q->text(0);
  }
  return out;
}

// --- images -----------------------------------------------------------------------------------

result<std::int64_t> SqliteCatalog::insert_image(const NewImage& image) {
  auto q = impl_->query(
      "INSERT INTO images(name, version, models, size_bytes, sha256, envelope, signer_key_ids, "
      "description, created_at, filename, sha1, md5) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
  if (!q) {
    return q.error();
  }
  q->bind(1, image.name)
      .bind(2, image.version)
      .bind(3, to_json_array(image.models))
      .bind(4, static_cast<std::int64_t>(image.size_bytes))
      .bind(5, hex_encode(image.sha256))
      .bind(6, image.envelope)
      .bind(7, to_json_array(image.signer_key_ids))
      .bind(8, image.description)
      .bind(9, image.created_at)
      .bind(10, image.filename)
      .bind(11, image.sha1_hex)
      .bind(12, image.md5_hex);
  if (auto r = q->run(); !r) {
    if (r.error() == error::conflict) {
      return Error(error::conflict, "image " + image.name + " " + image.version + " exists");
    }
    return r.error();
  }
  return sqlite3_last_insert_rowid(impl_->db());
}

result<ImageRecord> SqliteCatalog::find_image(std::int64_t id) {
  auto q = impl_->query(std::string("SELECT ") + kImageColumns + " FROM images WHERE id = ?1");
  if (!q) {
    return q.error();
  }
  q->bind(1, id);
  return single(
      *q, [](const Query& r) { return read_image(r); },
      [id] { return Error(error::not_found, "image " + std::to_string(id)); });
}

result<std::vector<ImageRecord>> SqliteCatalog::list_images() {
  auto q = impl_->query(std::string("SELECT ") + kImageColumns +
                        " FROM images ORDER BY created_at DESC, id DESC");
  if (!q) {
    return q.error();
  }
  return collect(*q, [](const Query& r) { return read_image(r); });
}

result<void> SqliteCatalog::delete_image(std::int64_t id) {
  impl_->offers.rev = -1;  // find_offer reads offer_revision again
  auto tx = Transaction::begin(*impl_);
  if (!tx) {
    return tx.error();
  }
  {
    // A DDI action still running (one whose device refused a cancellation, say) keeps its
    // image too: the device may be downloading it.
    auto active = impl_->query(
        "SELECT (SELECT count(*) FROM deployments WHERE image_id = ?1 AND cancelled_at IS NULL) + "
        "(SELECT count(*) FROM ddi_actions a JOIN deployments d ON d.id = a.deployment_id "
        "WHERE d.image_id = ?1 AND a.status IN ('open', 'canceling'))");
    if (!active) {
      return active.error();
    }
    active->bind(1, id);
    auto row = active->step();
    if (!row) {
      return row.error();
    }
    if (active->int64(0) > 0) {
      return Error(error::in_use, "image " + std::to_string(id) +
                                      " has an active deployment or a DDI action in progress");
    }
  }
  auto q = impl_->query("DELETE FROM images WHERE id = ?1");
  if (!q) {
    return q.error();
  }
  q->bind(1, id);
  if (auto r = q->run(); !r) {
    return r.error();
  }
  if (sqlite3_changes(impl_->db()) == 0) {
    return Error(error::not_found, "image " + std::to_string(id));
  }
  return tx->commit();
}

result<void> SqliteCatalog::set_artifact_fields(std::int64_t id, std::string_view filename,
                                                std::string_view sha1_hex,
                                                std::string_view md5_hex) {
  impl_->offers.rev = -1;  // find_offer reads offer_revision again
  auto q = impl_->query("UPDATE images SET filename = ?2, sha1 = ?3, md5 = ?4 WHERE id = ?1");
  if (!q) {
    return q.error();
  }
  q->bind(1, id).bind(2, filename).bind(3, sha1_hex).bind(4, md5_hex);
  if (auto r = q->run(); !r) {
    return r;
  }
  if (sqlite3_changes(impl_->db()) == 0) {
    return Error(error::not_found, "image " + std::to_string(id));
  }
  return {};
}

result<std::uint64_t> SqliteCatalog::count_images_with_blob(const Sha256Digest& d) {
  auto q = impl_->query("SELECT count(*) FROM images WHERE sha256 = ?1");
  if (!q) {
    return q.error();
  }
  q->bind(1, hex_encode(d));
  auto row = q->step();
  if (!row) {
    return row.error();
  }
  return static_cast<std::uint64_t>(q->int64(0));
}

result<std::vector<Sha256Digest>> SqliteCatalog::referenced_blobs() {
  auto q = impl_->query("SELECT DISTINCT sha256 FROM images");
  if (!q) {
    return q.error();
  }
  std::vector<Sha256Digest> out;
  while (true) {
    auto row = q->step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return out;
    }
    auto d = parse_sha256_hex(q->text(0));
    if (!d) {
      return Error(error::corrupt, "images.sha256 holds '" + q->text(0) + "'");
    }
    out.push_back(*d);
  }
}

// --- devices ----------------------------------------------------------------------------------

result<std::vector<RecordedCheckin>> SqliteCatalog::record_checkins(
    std::span<const DeviceCheckin> batch, std::int64_t now) {
  CheckinMemo& memo = impl_->checkins;
  auto recorded = [&]() -> result<std::vector<RecordedCheckin>> {
    auto tx = Transaction::begin(*impl_);
    if (!tx) {
      return tx.error();
    }
    auto version = impl_->scalar("PRAGMA data_version");
    if (!version) {
      return version.error();
    }
    memo.check(impl_->db(), *version);
    std::vector<RecordedCheckin> out;
    out.reserve(batch.size());
    for (const DeviceCheckin& c : batch) {
      auto one = record_one_checkin(c, now);
      if (!one) {
        return one.error();
      }
      out.push_back(std::move(*one));
    }
    if (auto r = tx->commit(); !r) {
      return r.error();
    }
    return out;
  }();
  memo.settle(impl_->db(), recorded.has_value());
  return recorded;
}

result<RecordedCheckin> SqliteCatalog::record_one_checkin(const DeviceCheckin& c,
                                                          std::int64_t now) {
  // Both the check-in's answer and the batch's can be an error: spelled out, not converted.
  const auto answer = [](RecordedCheckin r) {
    return result<RecordedCheckin>(boost::system::in_place_value, std::move(r));
  };
  const auto batch_fails = [](const Error& e) {
    return result<RecordedCheckin>(boost::system::in_place_error, e);
  };
  // Some failures (a full disk, an I/O error) make SQLite roll back the whole transaction
  // itself: then the batch fails with that error.
  const auto batch_lost = [&] { return sqlite3_get_autocommit(impl_->db()) != 0; };
  CheckinMemo& memo = impl_->checkins;
  if (CheckinMemo::Device* known = memo.repeated_by(c)) {
    // Nothing new: at most last_seen moves, in one statement, which fails whole or not at all.
    RecordedCheckin before = std::optional<DeviceRecord>(known->row);
    if (known->row.last_seen != now) {
      if (auto r = touch_last_seen(c.device_id, now); !r) {
        memo.forget(c.device_id);
        return batch_lost() ? batch_fails(r.error()) : answer(r.error());
      }
      known->row.last_seen = now;
    }
    return answer(std::move(before));
  }
  if (auto r = impl_->run("SAVEPOINT checkin"); !r) {
    return batch_fails(r.error());
  }
  auto one = [&]() -> RecordedCheckin {
    auto before = find_device(c.device_id);
    if (!before && before.error() != error::not_found) {
      return before.error();
    }
    std::optional<DeviceRecord> known;
    if (before) {
      known = std::move(*before);
    }
    if (auto r = write_checkin(c, known, now); !r) {
      return r.error();
    }
    return known;
  }();
  memo.forget(c.device_id);  // remembered again below once all of it stands
  // A failed check-in leaves nothing behind; the savepoint is released either way so that the
  // next one starts at the same depth. Should either statement fail, the batch does.
  if (!one) {
    if (batch_lost()) {
      return batch_fails(one.error());
    }
    if (auto r = impl_->run("ROLLBACK TO checkin"); !r) {
      return batch_fails(r.error());
    }
  }
  if (auto r = impl_->run("RELEASE checkin"); !r) {
    return batch_fails(r.error());
  }
  if (one) {
    memo.remember(c, *one, now);
  }
  return answer(std::move(one));
}

result<void> SqliteCatalog::touch_last_seen(std::string_view device_id, std::int64_t now) {
  auto seen = impl_->query("UPDATE devices SET last_seen = ?2 WHERE id = ?1");
  if (!seen) {
    return seen.error();
  }
  seen->bind_ref(1, device_id).bind(2, now);
  return seen->run();
}

result<void> SqliteCatalog::write_checkin(const DeviceCheckin& c,
                                          const std::optional<DeviceRecord>& before,
                                          std::int64_t now) {
  // Only what changed is written. An UPDATE rewrites the entry of every index on a column it
  // sets, and a device polling while nothing happens changes only last_seen, at most once a
  // second: rewriting its model, version and state too cost four index updates per check-in.
  if (before && leaves_row(*before, c)) {
    if (before->last_seen != now) {
      if (auto r = touch_last_seen(c.device_id, now); !r) {
        return r.error();
      }
    }
  } else {
    auto upsert = impl_->query(
        "INSERT INTO devices(id, model, version, state, last_result, last_message, first_seen, "
        "last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) "
        "ON CONFLICT(id) DO UPDATE SET model = excluded.model, version = excluded.version, "
        "state = excluded.state, last_result = coalesce(excluded.last_result, last_result), "
        "last_message = coalesce(excluded.last_message, last_message), "
        "last_seen = excluded.last_seen");
    if (!upsert) {
      return upsert.error();
    }
    upsert->bind_ref(1, c.device_id)
        .bind_ref(2, c.model)
        .bind_ref(3, c.version)
        .bind_ref(4, c.state)
        .bind_ref_opt(5, c.result)
        .bind_ref_opt(6, c.message)
        .bind(7, now);
    if (auto r = upsert->run(); !r) {
      return r.error();
    }
  }
  // History records changes: a check-in that repeats the device's previous event exactly (a
  // device polling while nothing happens) only moves last_seen, so a device that checks in every
  // hour for a year keeps a readable history instead of 8,760 identical rows.
  bool repeat = false;
  {
    auto last = impl_->query(
        "SELECT kind, state, version, result, message, image_id FROM device_events "
        "WHERE device_id = ?1 ORDER BY id DESC LIMIT 1");
    if (!last) {
      return last.error();
    }
    last->bind_ref(1, c.device_id);
    auto row = last->step();
    if (!row) {
      return row.error();
    }
    if (*row && last->text(0) == "checkin") {
      const std::string state = last->text(1);
      const std::string version = last->text(2);
      const auto result = last->opt_text(3);
      const auto message = last->opt_text(4);
      repeat = LastCheckin{state, version, result, message, last->opt_int64(5)}.repeated_by(c);
    }
  }
  if (!repeat) {
    if (auto e = append_event(DeviceEvent{.id = 0,
                                          .device_id = c.device_id,
                                          .at = now,
                                          .kind = "checkin",
                                          .state = c.state,
                                          .version = c.version,
                                          .result = c.result,
                                          .message = c.message,
                                          .image_id = c.offered_image_id});
        !e) {
      return e.error();
    }
  }
  return {};
}

result<std::int64_t> SqliteCatalog::append_event(const DeviceEvent& e) {
  auto q = impl_->query(
      "INSERT INTO device_events(device_id, at, kind, state, version, result, message, image_id) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (!q) {
    return q.error();
  }
  q->bind_ref(1, e.device_id)
      .bind(2, e.at)
      .bind_ref(3, e.kind)
      .bind_ref(4, e.state)
      .bind_ref(5, e.version)
      .bind_ref_opt(6, e.result)
      .bind_ref_opt(7, e.message)
      .bind_opt(8, e.image_id);
  if (auto r = q->run(); !r) {
    if (r.error() == error::not_found) {
      return Error(error::not_found, "device " + e.device_id);
    }
    return r.error();
  }
  return sqlite3_last_insert_rowid(impl_->db());
}

result<DeviceRecord> SqliteCatalog::find_device(std::string_view id) {
  static const std::string sql =
      std::string("SELECT ") + kDeviceColumns + " FROM devices WHERE id = ?1";
  auto q = impl_->query(sql);
  if (!q) {
    return q.error();
  }
  q->bind_ref(1, id);
  return single(
      *q, [](const Query& r) { return read_device(r); },
      [id] { return Error(error::not_found, "device " + std::string(id)); });
}

result<DeviceRecord> SqliteCatalog::touch_device(std::string_view id, std::string_view model,
                                                 std::int64_t now) {
  auto tx = Transaction::begin(*impl_);
  if (!tx) {
    return tx.error();
  }
  auto before = find_device(id);
  if (!before && before.error() != error::not_found) {
    return before.error();
  }
  {
    auto q = before ? impl_->query(
                          "UPDATE devices SET last_seen = ?3, model = "
                          "CASE WHEN ?2 = '' THEN model ELSE ?2 END WHERE id = ?1")
                    : impl_->query(
                          "INSERT INTO devices(id, model, version, state, first_seen, last_seen) "
                          "VALUES (?1, ?2, '', 'idle', ?3, ?3)");
    if (!q) {
      return q.error();
    }
    q->bind(1, id).bind(2, model).bind(3, now);
    if (auto r = q->run(); !r) {
      return r.error();
    }
  }
  // Only a first sight is an event: a device polling every minute adds nothing to read.
  if (!before) {
    if (auto e = append_event(DeviceEvent{.id = 0,
                                          .device_id = std::string(id),
                                          .at = now,
                                          .kind = "registered",
                                          .state = "idle",
                                          .version = "",
                                          .result = std::nullopt,
                                          .message = std::nullopt,
                                          .image_id = std::nullopt});
        !e) {
      return e.error();
    }
  }
  auto device = find_device(id);
  if (!device) {
    return device.error();
  }
  if (auto r = tx->commit(); !r) {
    return r.error();
  }
  return device;
}

result<void> SqliteCatalog::put_attributes(std::string_view device_id,
                                           std::string_view attributes_json, std::int64_t now) {
  auto q = impl_->query("UPDATE devices SET attributes = ?2, last_seen = ?3 WHERE id = ?1");
  if (!q) {
    return q.error();
  }
  q->bind(1, device_id).bind(2, attributes_json).bind(3, now);
  if (auto r = q->run(); !r) {
    return r;
  }
  if (sqlite3_changes(impl_->db()) == 0) {
    return Error(error::not_found, "device " + std::string(device_id));
  }
  return {};
}

result<DevicePage> SqliteCatalog::list_devices(const DeviceQuery& query) {
  // Only fixed SQL fragments are concatenated; every value is a bound parameter.
  std::string where = " WHERE 1";
  if (query.model) {
    where += " AND model = ?1";
  }
  if (query.version) {
    where += " AND version = ?2";
  }
  if (query.state) {
    where += " AND state = ?3";
  }
  // A prefix is a range of the primary key: ids from the prefix up to (not including) its
  // successor, the prefix with its last byte below 0xff incremented (none if all are 0xff).
  std::optional<std::string> prefix_end;
  if (query.id_prefix) {
    where += " AND id >= ?4";
    std::string end = *query.id_prefix;
    while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) {
      end.pop_back();
    }
    if (!end.empty()) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      where += " AND id < ?7";
      prefix_end = std::move(end);
    }
  }
  const char* column = "id";
  switch (query.sort) {
    case DeviceQuery::Sort::id:
      column = "id";
      break;
    case DeviceQuery::Sort::last_seen:
      column = "last_seen";
      break;
    case DeviceQuery::Sort::version:
      column = "version";
      break;
    case DeviceQuery::Sort::model:
      column = "model";
      break;
    case DeviceQuery::Sort::state:
      column = "state";
      break;
  }
  const std::string dir = query.descending ? " DESC" : " ASC";
  const std::string order = std::string(" ORDER BY ") + column + dir + ", id" + dir;
  auto bind_filters = [&](Query& q) {
    if (query.model) {
      q.bind(1, *query.model);
    }
    if (query.version) {
      q.bind(2, *query.version);
    }
    if (query.state) {
      q.bind(3, *query.state);
    }
    if (query.id_prefix) {
      q.bind(4, *query.id_prefix);
    }
    if (prefix_end) {
      q.bind(7, *prefix_end);
    }
  };

  DevicePage page;
  {
    auto count = impl_->query("SELECT count(*) FROM devices" + where);
    if (!count) {
      return count.error();
    }
    bind_filters(*count);
    auto row = count->step();
    if (!row) {
      return row.error();
    }
    page.total = static_cast<std::uint64_t>(count->int64(0));
  }
  auto q = impl_->query(std::string("SELECT ") + kDeviceColumns + " FROM devices" + where + order +
                        " LIMIT ?5 OFFSET ?6");
  if (!q) {
    return q.error();
  }
  bind_filters(*q);
  q->bind(5, static_cast<std::int64_t>(std::min(query.limit, kMaxPageSize)))
      .bind(6, static_cast<std::int64_t>(query.offset));
  while (true) {
    auto row = q->step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return page;
    }
    page.devices.push_back(read_device(*q));
  }
}

result<std::vector<DeviceEvent>> SqliteCatalog::list_events(std::string_view device_id,
                                                            const EventQuery& page) {
  // Both orders walk the (device_id, id) index from the cursor.
  auto q = impl_->query(
      page.newest_first
          ? "SELECT id, device_id, at, kind, state, version, result, message, image_id "
            "FROM device_events WHERE device_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
          : "SELECT id, device_id, at, kind, state, version, result, message, image_id "
            "FROM device_events WHERE device_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
  if (!q) {
    return q.error();
  }
  const std::int64_t cursor = page.newest_first && page.cursor == 0
                                  ? std::numeric_limits<std::int64_t>::max()
                                  : page.cursor;
  q->bind(1, device_id)
      .bind(2, cursor)
      .bind(3, static_cast<std::int64_t>(std::min(page.limit, kMaxPageSize)));
  return collect(*q, [](const Query& r) {
    return DeviceEvent{r.int64(0), r.text(1),     r.int64(2),    r.text(3),     r.text(4),
                       r.text(5),  r.opt_text(6), r.opt_text(7), r.opt_int64(8)};
  });
}

// --- deployments ------------------------------------------------------------------------------

result<std::int64_t> SqliteCatalog::create_deployment(const NewDeployment& d) {
  impl_->offers.rev = -1;  // find_offer reads offer_revision again
  if (d.devices.empty() && d.models.empty()) {
    return Error(error::invalid_argument, "a deployment needs at least one device or model");
  }
  auto tx = Transaction::begin(*impl_);
  if (!tx) {
    return tx.error();
  }
  std::int64_t id = 0;
  {
    auto q = impl_->query(
        "INSERT INTO deployments(image_id, allow_downgrade, created_at, action_type) "
        "VALUES (?1, ?2, ?3, ?4)");
    if (!q) {
      return q.error();
    }
    q->bind(1, d.image_id)
        .bind(2, std::int64_t{d.allow_downgrade})
        .bind(3, d.created_at)
        .bind(4, to_string(d.action_type));
    if (auto r = q->run(); !r) {
      if (r.error() == error::not_found) {
        return Error(error::not_found, "image " + std::to_string(d.image_id));
      }
      return r.error();
    }
    id = sqlite3_last_insert_rowid(impl_->db());
  }
  auto add_targets = [&](const std::vector<std::string>& values,
                         std::string_view kind) -> result<void> {
    for (const auto& v : values) {
      auto q = impl_->query(
          "INSERT OR IGNORE INTO deployment_targets(deployment_id, kind, value) "
          "VALUES (?1, ?2, ?3)");
      if (!q) {
        return q.error();
      }
      q->bind(1, id).bind(2, kind).bind(3, v);
      if (auto r = q->run(); !r) {
        return r;
      }
    }
    return {};
  };
  if (auto r = add_targets(d.devices, "device"); !r) {
    return r.error();
  }
  if (auto r = add_targets(d.models, "model"); !r) {
    return r.error();
  }
  if (auto r = tx->commit(); !r) {
    return r.error();
  }
  return id;
}

namespace {

constexpr const char* kDeploymentColumns =
    "d.id, d.image_id, d.allow_downgrade, d.created_at, d.cancelled_at, d.action_type";

DeploymentRecord read_deployment(const Query& q) {
  DeploymentRecord r;
  r.id = q.int64(0);
  r.image_id = q.int64(1);
  r.allow_downgrade = q.int64(2) != 0;
  r.created_at = q.int64(3);
  r.cancelled_at = q.opt_int64(4);
  r.action_type = parse_action_type(q.text(5)).value_or(ActionType::forced);
  return r;
}

result<void> read_targets(SqliteCatalog::Impl& impl, DeploymentRecord& d) {
  auto t = impl.query(
      "SELECT kind, value FROM deployment_targets WHERE deployment_id = ?1 ORDER BY kind, value");
  if (!t) {
    return t.error();
  }
  t->bind(1, d.id);
  while (true) {
    auto row = t->step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return {};
    }
    (t->text(0) == "device" ? d.devices : d.models).push_back(t->text(1));
  }
}

}  // namespace

result<std::vector<DeploymentRecord>> SqliteCatalog::list_deployments() {
  std::vector<DeploymentRecord> out;
  {
    auto q = impl_->query(std::string("SELECT ") + kDeploymentColumns +
                          " FROM deployments d ORDER BY d.created_at DESC, d.id DESC");
    if (!q) {
      return q.error();
    }
    while (true) {
      auto row = q->step();
      if (!row) {
        return row.error();
      }
      if (!*row) {
        break;
      }
      out.push_back(read_deployment(*q));
    }
  }
  for (auto& d : out) {
    if (auto r = read_targets(*impl_, d); !r) {
      return r.error();
    }
  }
  return out;
}

result<void> SqliteCatalog::backup_to(const std::filesystem::path& to) {
  std::error_code ec;
  if (std::filesystem::exists(to, ec)) {
    return Error(error::conflict, to.string() + " exists");
  }
  if (auto r = make_private(to); !r) {
    return r.error();
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(
      to.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  DbPtr dest(raw);
  if (rc != SQLITE_OK) {
    return sqlite_error(dest.get(), rc, "creating " + to.string());
  }
  sqlite3_backup* backup = sqlite3_backup_init(dest.get(), "main", impl_->db(), "main");
  if (backup == nullptr) {
    return sqlite_error(dest.get(), sqlite3_extended_errcode(dest.get()), "backup");
  }
  // -1: every page in one step, under one read transaction, hence one snapshot.
  const int step = sqlite3_backup_step(backup, -1);
  const int finish = sqlite3_backup_finish(backup);
  if (step != SQLITE_DONE) {
    return sqlite_error(dest.get(), step, "backup to " + to.string());
  }
  if (finish != SQLITE_OK) {
    return sqlite_error(dest.get(), finish, "backup to " + to.string());
  }
  // The copy is a WAL database like its source; fold the log into the file so that the copy is
  // one self-contained file once closed.
  if (const int c = sqlite3_wal_checkpoint_v2(dest.get(), nullptr, SQLITE_CHECKPOINT_TRUNCATE,
                                              nullptr, nullptr);
      c != SQLITE_OK) {
    return sqlite_error(dest.get(), c, "checkpoint " + to.string());
  }
  return {};
}

result<void> SqliteCatalog::check_integrity() {
  auto q = impl_->query("PRAGMA integrity_check");
  if (!q) {
    return q.error();
  }
  auto row = q->step();
  if (!row) {
    return row.error();
  }
  const std::string verdict = *row ? q->text(0) : "no answer";
  if (verdict != "ok") {
    return Error(error::corrupt, "integrity_check: " + verdict);
  }
  return {};
}

result<FleetStats> SqliteCatalog::fleet_stats(std::size_t failures) {
  FleetStats stats;
  // Fixed column names only; nothing from a caller is concatenated.
  for (auto [column, out] :
       {std::pair{"version", &stats.by_version}, std::pair{"model", &stats.by_model},
        std::pair{"state", &stats.by_state}}) {
    auto q =
        impl_->query(std::string("SELECT ") + column + ", count(*) AS n FROM devices GROUP BY " +
                     column + " ORDER BY n DESC, " + column);
    if (!q) {
      return q.error();
    }
    auto rows = collect(*q, [](const Query& r) { return std::pair{r.text(0), r.int64(1)}; });
    if (!rows) {
      return rows.error();
    }
    *out = std::move(*rows);
  }
  for (const auto& [state, n] : stats.by_state) {
    stats.devices += n;
  }
  auto q = impl_->query(std::string("SELECT ") + kDeviceColumns +
                        " FROM devices WHERE last_result IS NOT NULL AND last_result NOT IN "
                        "('initial', 'success') ORDER BY last_seen DESC, id LIMIT ?1");
  if (!q) {
    return q.error();
  }
  q->bind(1, static_cast<std::int64_t>(failures));
  auto failed = collect(*q, [](const Query& r) { return read_device(r); });
  if (!failed) {
    return failed.error();
  }
  stats.recent_failures = std::move(*failed);
  return stats;
}

result<DeploymentProgress> SqliteCatalog::deployment_progress(std::int64_t id) {
  auto q = impl_->query(
      "WITH dep AS (SELECT i.version AS version FROM deployments d JOIN images i "
      "ON i.id = d.image_id WHERE d.id = ?1), "
      "targeted AS (SELECT * FROM devices WHERE id IN (SELECT value FROM deployment_targets "
      "WHERE deployment_id = ?1 AND kind = 'device') OR model IN (SELECT value FROM "
      "deployment_targets WHERE deployment_id = ?1 AND kind = 'model')) "
      "SELECT (SELECT count(*) FROM dep), count(t.id), "
      "coalesce(sum(t.version = (SELECT version FROM dep)), 0), "
      "coalesce(sum(t.state IN ('downloading', 'downloaded', 'updating')), 0), "
      "coalesce(sum(t.version != (SELECT version FROM dep) AND t.last_result IS NOT NULL AND "
      "t.last_result NOT IN ('initial', 'success')), 0) FROM targeted t");
  if (!q) {
    return q.error();
  }
  q->bind(1, id);
  auto row = single(
      *q,
      [](const Query& r) {
        return std::pair{r.int64(0),
                         DeploymentProgress{r.int64(1), r.int64(2), r.int64(3), r.int64(4)}};
      },
      [id] { return Error(error::not_found, "deployment " + std::to_string(id)); });
  if (!row) {
    return row.error();
  }
  if (row->first == 0) {
    return Error(error::not_found, "deployment " + std::to_string(id));
  }
  return row->second;
}

result<void> SqliteCatalog::cancel_deployment(std::int64_t id, std::int64_t now) {
  impl_->offers.rev = -1;  // find_offer reads offer_revision again
  auto tx = Transaction::begin(*impl_);
  if (!tx) {
    return tx.error();
  }
  {
    auto q = impl_->query(
        "UPDATE deployments SET cancelled_at = ?2 WHERE id = ?1 AND cancelled_at IS NULL");
    if (!q) {
      return q.error();
    }
    q->bind(1, id).bind(2, now);
    if (auto r = q->run(); !r) {
      return r;
    }
    if (sqlite3_changes(impl_->db()) == 0) {
      return Error(error::not_found, "no active deployment " + std::to_string(id));
    }
  }
  // Devices already offered it over DDI are asked to stop (cancelAction) at their next poll.
  auto q = impl_->query(
      "UPDATE ddi_actions SET status = 'canceling', updated_at = ?2 "
      "WHERE deployment_id = ?1 AND status = 'open'");
  if (!q) {
    return q.error();
  }
  q->bind(1, id).bind(2, now);
  if (auto r = q->run(); !r) {
    return r;
  }
  return tx->commit();
}

namespace {

// The active deployments and their images, read in one transaction so that they agree with
// the revision read with them.
result<void> load_offers(SqliteCatalog& catalog, SqliteCatalog::Impl& impl) {
  // A savepoint rather than BEGIN: it also nests in a transaction a caller may hold.
  if (auto r = impl.run("SAVEPOINT offers"); !r) {
    return r;
  }
  struct End {
    SqliteCatalog::Impl& impl;
    ~End() { (void)impl.run("RELEASE offers"); }  // a read: nothing to keep or lose
  } end{impl};
  auto rev = impl.scalar("SELECT rev FROM offer_revision");
  if (!rev) {
    return rev.error();
  }
  std::vector<DeploymentRecord> active;
  {
    auto q = impl.query(std::string("SELECT ") + kDeploymentColumns +
                        " FROM deployments d WHERE d.cancelled_at IS NULL "
                        "ORDER BY d.created_at DESC, d.id DESC");
    if (!q) {
      return q.error();
    }
    auto rows = collect(*q, [](const Query& r) { return read_deployment(r); });
    if (!rows) {
      return rows.error();
    }
    active = std::move(*rows);
  }
  SqliteCatalog::Impl::Offers loaded;
  loaded.rev = *rev;
  loaded.checked = std::chrono::steady_clock::now();
  loaded.offers.reserve(active.size());
  for (auto& d : active) {
    auto image = catalog.find_image(d.image_id);
    if (!image) {
      return image.error();
    }
    // The newest deployment at each level wins: the first one seen keeps the key.
    const std::size_t i = loaded.offers.size();
    if (auto r = read_targets(impl, d); !r) {
      return r.error();
    }
    for (auto& device : d.devices) {
      loaded.by_device.emplace(std::move(device), i);
    }
    for (auto& model : d.models) {
      loaded.by_model.emplace(std::move(model), i);
    }
    d.devices.clear();
    d.models.clear();
    loaded.offers.push_back(std::make_shared<const Offer>(Offer{std::move(d), std::move(*image)}));
  }
  impl.offers = std::move(loaded);
  return {};
}

}  // namespace

result<std::shared_ptr<const Offer>> SqliteCatalog::find_offer(std::string_view device_id,
                                                               std::string_view model) {
  auto& o = impl_->offers;
  const auto now = std::chrono::steady_clock::now();
  if (o.rev < 0 || now - o.checked >= impl_->offer_recheck) {
    auto rev = impl_->scalar("SELECT rev FROM offer_revision");
    if (!rev) {
      return rev.error();
    }
    if (*rev != o.rev) {
      if (auto r = load_offers(*this, *impl_); !r) {
        o.rev = -1;
        return r.error();
      }
    }
    o.checked = now;
  }
  auto it = o.by_device.find(device_id);
  if (it == o.by_device.end()) {
    it = o.by_model.find(model);
    if (it == o.by_model.end()) {
      return std::shared_ptr<const Offer>();
    }
  }
  return o.offers[it->second];
}

// --- DDI actions ------------------------------------------------------------------------------

namespace {

constexpr const char* kActionColumns =
    "a.id, a.deployment_id, a.device_id, d.image_id, d.action_type, a.status, a.created_at, "
    "a.updated_at";

ActionStatus parse_action_status(std::string_view s) {
  for (auto st : {ActionStatus::open, ActionStatus::canceling, ActionStatus::closed,
                  ActionStatus::canceled}) {
    if (to_string(st) == s) {
      return st;
    }
  }
  return ActionStatus::closed;  // the CHECK constraint admits nothing else
}

ActionRecord read_action(const Query& q) {
  return ActionRecord{.id = q.int64(0),
                      .deployment_id = q.int64(1),
                      .device_id = q.text(2),
                      .image_id = q.int64(3),
                      .type = parse_action_type(q.text(4)).value_or(ActionType::forced),
                      .status = parse_action_status(q.text(5)),
                      .created_at = q.int64(6),
                      .updated_at = q.int64(7)};
}

}  // namespace

result<ActionRecord> SqliteCatalog::open_action(std::string_view device_id,
                                                std::int64_t deployment_id, std::int64_t now) {
  {
    auto q = impl_->query(
        "INSERT INTO ddi_actions(deployment_id, device_id, status, created_at, updated_at) "
        "VALUES (?1, ?2, 'open', ?3, ?3) ON CONFLICT(deployment_id, device_id) DO NOTHING");
    if (!q) {
      return q.error();
    }
    q->bind(1, deployment_id).bind(2, device_id).bind(3, now);
    if (auto r = q->run(); !r) {
      return r.error();
    }
  }
  auto q = impl_->query(std::string("SELECT ") + kActionColumns +
                        " FROM ddi_actions a JOIN deployments d ON d.id = a.deployment_id "
                        "WHERE a.deployment_id = ?1 AND a.device_id = ?2");
  if (!q) {
    return q.error();
  }
  q->bind(1, deployment_id).bind(2, device_id);
  return single(*q, read_action, [] { return Error(error::not_found, "action"); });
}

result<ActionRecord> SqliteCatalog::find_action(std::int64_t id) {
  auto q = impl_->query(std::string("SELECT ") + kActionColumns +
                        " FROM ddi_actions a JOIN deployments d ON d.id = a.deployment_id "
                        "WHERE a.id = ?1");
  if (!q) {
    return q.error();
  }
  q->bind(1, id);
  return single(*q, read_action,
                [id] { return Error(error::not_found, "action " + std::to_string(id)); });
}

result<void> SqliteCatalog::request_action_cancel(std::int64_t id, std::int64_t now) {
  auto q = impl_->query(
      "UPDATE ddi_actions SET status = 'canceling', updated_at = ?2 WHERE id = ?1 AND status = "
      "'open'");
  if (!q) {
    return q.error();
  }
  q->bind(1, id).bind(2, now);
  if (auto r = q->run(); !r) {
    return r;
  }
  if (sqlite3_changes(impl_->db()) == 0) {
    auto found = find_action(id);
    return found ? Error(error::conflict, "action " + std::to_string(id) + " is not open")
                 : found.error();
  }
  return {};
}

result<std::vector<ActionRecord>> SqliteCatalog::active_actions(std::string_view device_id) {
  auto q = impl_->query(std::string("SELECT ") + kActionColumns +
                        " FROM ddi_actions a JOIN deployments d ON d.id = a.deployment_id "
                        "WHERE a.device_id = ?1 AND a.status IN ('open', 'canceling') "
                        "ORDER BY a.id");
  if (!q) {
    return q.error();
  }
  q->bind(1, device_id);
  return collect(*q, read_action);
}

result<DeviceRecord> SqliteCatalog::record_action_update(const ActionUpdate& u) {
  auto tx = Transaction::begin(*impl_);
  if (!tx) {
    return tx.error();
  }
  {
    auto q = impl_->query(
        "UPDATE ddi_actions SET status = ?2, updated_at = ?3 WHERE id = ?1 AND status = ?4 "
        "AND device_id = ?5");
    if (!q) {
      return q.error();
    }
    q->bind(1, u.action_id)
        .bind(2, to_string(u.status))
        .bind(3, u.event.at)
        .bind(4, to_string(u.expected))
        .bind(5, u.event.device_id);
    if (auto r = q->run(); !r) {
      return r.error();
    }
    if (sqlite3_changes(impl_->db()) == 0) {
      return Error(error::conflict, "action " + std::to_string(u.action_id) + " is not " +
                                        std::string(to_string(u.expected)));
    }
  }
  {
    auto q = impl_->query(
        "UPDATE devices SET state = ?2, version = ?3, last_result = coalesce(?4, last_result), "
        "last_message = coalesce(?5, last_message), last_seen = ?6 WHERE id = ?1");
    if (!q) {
      return q.error();
    }
    q->bind(1, u.event.device_id)
        .bind(2, u.event.state)
        .bind(3, u.event.version)
        .bind_opt(4, u.event.result)
        .bind_opt(5, u.event.message)
        .bind(6, u.event.at);
    if (auto r = q->run(); !r) {
      return r.error();
    }
    if (sqlite3_changes(impl_->db()) == 0) {
      return Error(error::not_found, "device " + u.event.device_id);
    }
  }
  if (auto e = append_event(u.event); !e) {
    return e.error();
  }
  auto device = find_device(u.event.device_id);
  if (!device) {
    return device.error();
  }
  if (auto r = tx->commit(); !r) {
    return r.error();
  }
  return device;
}

// --- admin tokens -----------------------------------------------------------------------------

result<std::int64_t> SqliteCatalog::create_token(std::string_view name,
                                                 std::string_view token_sha256_hex,
                                                 std::int64_t now) {
  if (name.empty() || token_sha256_hex.size() != 64) {
    return Error(error::invalid_argument, "token name must be non-empty and hash 64 hex chars");
  }
  auto q =
      impl_->query("INSERT INTO admin_tokens(name, token_sha256, created_at) VALUES (?1, ?2, ?3)");
  if (!q) {
    return q.error();
  }
  q->bind(1, name).bind(2, token_sha256_hex).bind(3, now);
  if (auto r = q->run(); !r) {
    if (r.error() == error::conflict) {
      return Error(error::conflict, "a live token named '" + std::string(name) + "' exists");
    }
    return r.error();
  }
  return sqlite3_last_insert_rowid(impl_->db());
}

result<AdminToken> SqliteCatalog::find_live_token(std::string_view token_sha256_hex) {
  auto q = impl_->query(
      "SELECT id, name, created_at, revoked_at FROM admin_tokens "
      "WHERE token_sha256 = ?1 AND revoked_at IS NULL");
  if (!q) {
    return q.error();
  }
  q->bind(1, token_sha256_hex);
  return single(
      *q,
      [](const Query& r) {
        return AdminToken{r.int64(0), r.text(1), r.int64(2), r.opt_int64(3)};
      },
      [] { return Error(error::not_found, "no such token"); });
}

result<void> SqliteCatalog::revoke_token(std::string_view name, std::int64_t now) {
  auto q = impl_->query(
      "UPDATE admin_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL");
  if (!q) {
    return q.error();
  }
  q->bind(1, name).bind(2, now);
  if (auto r = q->run(); !r) {
    return r;
  }
  if (sqlite3_changes(impl_->db()) == 0) {
    return Error(error::not_found, "no live token named '" + std::string(name) + "'");
  }
  return {};
}

result<std::vector<AdminToken>> SqliteCatalog::list_tokens() {
  auto q = impl_->query("SELECT id, name, created_at, revoked_at FROM admin_tokens ORDER BY id");
  if (!q) {
    return q.error();
  }
  return collect(*q, [](const Query& r) {
    return AdminToken{r.int64(0), r.text(1), r.int64(2), r.opt_int64(3)};
  });
}

// --- PSKs -------------------------------------------------------------------------------------

result<void> SqliteCatalog::put_psk(const PskCredential& psk, std::int64_t now) {
  if (psk.identity.empty() || psk.key.empty()) {
    return Error(error::invalid_argument, "PSK identity and key must be non-empty");
  }
  auto q = impl_->query(
      "INSERT INTO psk_credentials(device_id, identity, key, updated_at) VALUES (?1, ?2, ?3, ?4) "
      "ON CONFLICT(device_id) DO UPDATE SET identity = excluded.identity, key = excluded.key, "
      "updated_at = excluded.updated_at");
  if (!q) {
    return q.error();
  }
  q->bind(1, psk.device_id).bind(2, psk.identity).bind_blob(3, psk.key).bind(4, now);
  if (auto r = q->run(); !r) {
    if (r.error() == error::conflict) {
      return Error(error::conflict, "PSK identity is used by another device");
    }
    return r;
  }
  return {};
}

result<PskCredential> SqliteCatalog::find_psk(std::string_view identity) {
  auto q = impl_->query("SELECT device_id, identity, key FROM psk_credentials WHERE identity = ?1");
  if (!q) {
    return q.error();
  }
  q->bind(1, identity);
  return single(
      *q,
      [](const Query& r) {
        return PskCredential{r.text(0), r.text(1), r.blob(2)};
      },
      [] { return Error(error::not_found, "no such PSK identity"); });
}

result<void> SqliteCatalog::delete_psk(std::string_view device_id) {
  auto q = impl_->query("DELETE FROM psk_credentials WHERE device_id = ?1");
  if (!q) {
    return q.error();
  }
  q->bind(1, device_id);
  if (auto r = q->run(); !r) {
    return r;
  }
  if (sqlite3_changes(impl_->db()) == 0) {
    return Error(error::not_found, "device " + std::string(device_id) + " has no PSK");
  }
  return {};
}

// --- issued certificates ----------------------------------------------------------------------

result<void> SqliteCatalog::record_certificate(const IssuedCertificate& c) {
  auto q = impl_->query(
      "INSERT INTO device_certificates(serial, device_id, model, issued_at, not_after, "
      "revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!q) {
    return q.error();
  }
  q->bind(1, c.serial_hex)
      .bind(2, c.device_id)
      .bind(3, c.model)
      .bind(4, c.issued_at)
      .bind(5, c.not_after)
      .bind_opt(6, c.revoked_at);
  return q->run();
}

result<std::size_t> SqliteCatalog::revoke_certificates(std::string_view device_id,
                                                       std::int64_t now) {
  auto tx = Transaction::begin(*impl_);
  if (!tx) {
    return tx.error();
  }
  {
    auto known = impl_->query("SELECT count(*) FROM device_certificates WHERE device_id = ?1");
    if (!known) {
      return known.error();
    }
    known->bind(1, device_id);
    if (auto row = known->step(); !row) {
      return row.error();
    }
    if (known->int64(0) == 0) {
      return Error(error::not_found,
                   "no certificate was issued to device '" + std::string(device_id) + "'");
    }
  }
  auto q = impl_->query(
      "UPDATE device_certificates SET revoked_at = ?2 WHERE device_id = ?1 AND revoked_at IS NULL");
  if (!q) {
    return q.error();
  }
  q->bind(1, device_id).bind(2, now);
  if (auto r = q->run(); !r) {
    return r.error();
  }
  const auto changed = static_cast<std::size_t>(sqlite3_changes(impl_->db()));
  if (auto r = tx->commit(); !r) {
    return r.error();
  }
  return changed;
}

result<std::vector<IssuedCertificate>> SqliteCatalog::revoked_certificates() {
  auto q = impl_->query(
      "SELECT serial, device_id, model, issued_at, not_after, revoked_at FROM device_certificates "
      "WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial");
  if (!q) {
    return q.error();
  }
  return collect(*q, [](const Query& r) {
    return IssuedCertificate{r.text(0),  r.text(1),  r.text(2),
                             r.int64(3), r.int64(4), r.opt_int64(5)};
  });
}

}  // namespace fwdepot::storage
