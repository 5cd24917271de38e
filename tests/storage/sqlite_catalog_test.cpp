// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/storage/sqlite_catalog.hpp"

#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <array>
#include <cstdio>
#include <fstream>

namespace fwdepot::storage {
namespace {

using fwdepot::testing::TempDir;

NewImage image(std::string name, std::string version, std::int64_t at = 100) {
  NewImage i;
  i.name = std::move(name);
  i.version = std::move(version);
  i.models = {"board-a", "board-b"};
  i.size_bytes = 1234;
  i.sha256 = sha256(i.name + i.version);
  i.envelope = R"({"payloadType":"x"})";
  i.signer_key_ids = {"abc", "def"};
  i.description = "desc";
  i.created_at = at;
  return i;
}

class SqliteCatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = SqliteCatalog::open(dir_ / "fwdepot.db");
    ASSERT_TRUE(opened) << opened.error();
    catalog_ = std::move(*opened);
  }
  std::int64_t add(const NewImage& i) {
    auto id = catalog_->insert_image(i);
    EXPECT_TRUE(id) << id.error();
    return id ? *id : 0;
  }
  TempDir dir_;
  std::unique_ptr<SqliteCatalog> catalog_;
};

int user_version(const std::filesystem::path& db_path) {
  sqlite3* db = nullptr;
  sqlite3_open(db_path.c_str(), &db);
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr);
  sqlite3_step(stmt);
  const int v = sqlite3_column_int(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return v;
}

// The catalog holds PSKs: its file, its WAL and its backups are the owner's alone.
TEST(SqliteCatalogOpen, KeepsTheDatabaseFilesPrivate) {
  TempDir dir;
  const auto mode = [](const std::filesystem::path& p) {
    return std::filesystem::status(p).permissions() & std::filesystem::perms::mask;
  };
  const auto owner = std::filesystem::perms::owner_read | std::filesystem::perms::owner_write;
  {
    auto c = SqliteCatalog::open(dir / "new.db");
    ASSERT_TRUE(c) << c.error();
    ASSERT_TRUE((*c)->put_psk({"dev-1", "dev-1", "0123456789abcdef"}, 1));
    EXPECT_EQ(mode(dir / "new.db"), owner);
    EXPECT_EQ(mode(dir / "new.db-wal"), owner);
    ASSERT_TRUE((*c)->backup_to(dir / "copy.db"));
    EXPECT_EQ(mode(dir / "copy.db"), owner);
  }
  std::filesystem::permissions(
      dir / "copy.db", std::filesystem::perms::group_read | std::filesystem::perms::others_read,
      std::filesystem::perm_options::add);
  auto c = SqliteCatalog::open(dir / "copy.db");
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(mode(dir / "copy.db"), owner);
}

TEST(SqliteCatalogOpen, MigratesAnEmptyDatabaseAndReopensAsANoOp) {
  TempDir dir;
  const auto path = dir / "fwdepot.db";
  {
    auto c = SqliteCatalog::open(path);
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(*(*c)->integrity_check(), "ok");
  }
  EXPECT_EQ(user_version(path), SqliteCatalog::current_schema_version());
  {
    auto c = SqliteCatalog::open(path);
    ASSERT_TRUE(c) << c.error();
    auto id = (*c)->insert_image(image("fw", "1.0.0"));
    ASSERT_TRUE(id);
  }
  auto c = SqliteCatalog::open(path);
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)->list_images()->size(), 1u);
  EXPECT_EQ(user_version(path), SqliteCatalog::current_schema_version());
}

// A catalog written by the fwdepot before DDI (schema 1) opens: its rows keep their values, the
// new columns take their defaults, and a DDI action can be opened on an old deployment.
TEST(SqliteCatalogOpen, UpgradesASchema1CatalogWithItsData) {
  TempDir dir;
  const auto path = dir / "fwdepot.db";
  {
    auto c = SqliteCatalog::open(path);
    ASSERT_TRUE(c) << c.error();
    ASSERT_TRUE((*c)->insert_image(image("fw", "2.0.0")));
    ASSERT_TRUE((*c)->record_checkin({"dev-1", "board-a", "1.0.0", "idle", {}, {}, {}}, 10));
    ASSERT_TRUE((*c)->create_deployment({1, {"dev-1"}, {}, false, 20, ActionType::soft}));
  }
  // Back to schema 1: what migrations 3 and 2 added, taken away again.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string drop_3;
  for (const char* t :
       {"deployment_insert", "deployment_update", "deployment_delete", "target_insert",
        "target_update", "target_delete", "image_update", "image_delete"}) {
    drop_3 += std::string("DROP TRIGGER offer_rev_") + t + "; ";
  }
  ASSERT_EQ(
      sqlite3_exec(db, (drop_3 + "DROP TABLE offer_revision").c_str(), nullptr, nullptr, nullptr),
      SQLITE_OK)
      << sqlite3_errmsg(db);
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP TABLE ddi_actions; ALTER TABLE images DROP COLUMN filename; "
                         "ALTER TABLE images DROP COLUMN sha1; ALTER TABLE images DROP COLUMN md5; "
                         "ALTER TABLE devices DROP COLUMN attributes; "
                         "ALTER TABLE deployments DROP COLUMN action_type; PRAGMA user_version=1",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  ASSERT_EQ(user_version(path), 1);

  auto c = SqliteCatalog::open(path);
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(user_version(path), SqliteCatalog::current_schema_version());
  EXPECT_EQ(*(*c)->integrity_check(), "ok");
  auto img = (*c)->find_image(1);
  ASSERT_TRUE(img);
  EXPECT_EQ(img->name, "fw");
  EXPECT_EQ(img->filename, "");  // filled in by recover_storage at the next start
  auto dev = (*c)->find_device("dev-1");
  ASSERT_TRUE(dev);
  EXPECT_EQ(dev->version, "1.0.0");
  EXPECT_EQ(dev->attributes, "{}");
  EXPECT_EQ((*c)->list_deployments()->front().action_type, ActionType::forced);
  auto action = (*c)->open_action("dev-1", 1, 30);
  ASSERT_TRUE(action) << action.error();
  EXPECT_EQ(action->image_id, 1);
}

TEST(SqliteCatalogOpen, RefusesADatabaseFromANewerFwdepot) {
  TempDir dir;
  const auto path = dir / "fwdepot.db";
  ASSERT_TRUE(SqliteCatalog::open(path));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "PRAGMA user_version=999", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto c = SqliteCatalog::open(path);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), error::schema_too_new);
}

TEST(SqliteCatalogOpen, ReportsAFileThatIsNotADatabaseAsCorrupt) {
  TempDir dir;
  const auto path = dir / "fwdepot.db";
  std::ofstream(path) << std::string(8192, 'x');
  auto c = SqliteCatalog::open(path);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), error::corrupt);
}

TEST_F(SqliteCatalogTest, StoresAndListsImages) {
  const NewImage a = image("fw", "1.0.0", 100);
  const std::int64_t id = add(a);
  add(image("fw", "1.1.0", 200));
  auto found = catalog_->find_image(id);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->name, "fw");
  EXPECT_EQ(found->version, "1.0.0");
  EXPECT_EQ(found->models, a.models);
  EXPECT_EQ(found->size_bytes, a.size_bytes);
  EXPECT_EQ(found->sha256, a.sha256);
  EXPECT_EQ(found->envelope, a.envelope);
  EXPECT_EQ(found->signer_key_ids, a.signer_key_ids);
  EXPECT_EQ(found->created_at, 100);
  auto all = catalog_->list_images();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].version, "1.1.0");  // newest first
  EXPECT_EQ(catalog_->find_image(9999).error(), error::not_found);
}

TEST_F(SqliteCatalogTest, RefusesTheSameNameAndVersionTwice) {
  add(image("fw", "1.0.0"));
  auto again = catalog_->insert_image(image("fw", "1.0.0"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), error::conflict);
  EXPECT_EQ(catalog_->list_images()->size(), 1u);
}

TEST_F(SqliteCatalogTest, DeletesImagesOnlyWhenNoActiveDeploymentUsesThem) {
  const std::int64_t id = add(image("fw", "1.0.0"));
  auto dep = catalog_->create_deployment({id, {}, {"board-a"}, false, 10});
  ASSERT_TRUE(dep);
  EXPECT_EQ(catalog_->delete_image(id).error(), error::in_use);
  ASSERT_TRUE(catalog_->cancel_deployment(*dep, 11));
  EXPECT_TRUE(catalog_->delete_image(id));
  EXPECT_EQ(catalog_->delete_image(id).error(), error::not_found);
  EXPECT_TRUE(catalog_->list_deployments()->empty());
}

TEST_F(SqliteCatalogTest, CountsBlobReferences) {
  NewImage a = image("fw", "1.0.0");
  NewImage b = image("fw", "1.0.1");
  b.sha256 = a.sha256;
  add(a);
  add(b);
  EXPECT_EQ(*catalog_->count_images_with_blob(a.sha256), 2u);
  EXPECT_EQ(catalog_->referenced_blobs()->size(), 1u);
}

TEST_F(SqliteCatalogTest, RecordsCheckinsWithHistoryInOrder) {
  auto first = catalog_->record_checkin({"dev-1", "board-a", "1.0.0", "idle", {}, {}, 7}, 100);
  ASSERT_TRUE(first) << first.error();
  EXPECT_EQ(first->first_seen, 100);
  ASSERT_TRUE(
      catalog_->append_event({0, "dev-1", 150, "state", "downloading", "1.0.0", {}, {}, 7}));
  auto second = catalog_->record_checkin(
      {"dev-1", "board-a", "1.1.0", "idle", "success", "<b>hi</b>", {}}, 200);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->first_seen, 100);
  EXPECT_EQ(second->last_seen, 200);
  EXPECT_EQ(second->version, "1.1.0");
  EXPECT_EQ(second->last_result, "success");
  EXPECT_EQ(second->last_message, "<b>hi</b>");
  EXPECT_EQ(catalog_->append_event({0, "nobody", 1, "state", "idle", "1.0.0", {}, {}, {}}).error(),
            error::not_found);
  auto events = catalog_->list_events("dev-1", {});
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].kind, "checkin");
  EXPECT_EQ((*events)[0].image_id, 7);  // the offer made in answer to that check-in
  EXPECT_EQ((*events)[1].state, "downloading");
  EXPECT_EQ((*events)[1].image_id, 7);
  EXPECT_EQ((*events)[2].result, "success");
  EXPECT_EQ((*events)[2].image_id, std::nullopt);
  auto after = catalog_->list_events("dev-1", {.cursor = (*events)[1].id});
  ASSERT_EQ(after->size(), 1u);
  // Newest first, paged backwards from a cursor.
  auto newest = catalog_->list_events("dev-1", {.newest_first = true, .limit = 2});
  ASSERT_TRUE(newest);
  ASSERT_EQ(newest->size(), 2u);
  EXPECT_EQ((*newest)[0].id, (*events)[2].id);
  EXPECT_EQ((*newest)[1].id, (*events)[1].id);
  auto older = catalog_->list_events("dev-1", {.newest_first = true, .cursor = (*newest)[1].id});
  ASSERT_EQ(older->size(), 1u);
  EXPECT_EQ((*older)[0].id, (*events)[0].id);
  EXPECT_EQ(catalog_->find_device("nobody").error(), error::not_found);
}

TEST_F(SqliteCatalogTest, RepeatedCheckinsMoveLastSeenButAddNoHistory) {
  DeviceCheckin idle{"dev-1", "board-a", "1.0.0", "idle", {}, {}, {}};
  ASSERT_TRUE(catalog_->record_checkin(idle, 100));
  auto again = catalog_->record_checkin(idle, 200);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->last_seen, 200);
  EXPECT_EQ(catalog_->list_events("dev-1", {})->size(), 1u);
  // Any difference is history: an offer, a state, a result, a message, back to the same.
  DeviceCheckin offered = idle;
  offered.offered_image_id = 7;
  DeviceCheckin failed = idle;
  failed.result = "integrity_failure";
  failed.message = "bad digest";
  DeviceCheckin failed_other = failed;
  failed_other.message = "bad digest again";
  std::int64_t t = 300;
  for (const DeviceCheckin* c :
       {&offered, &offered, &failed, &failed_other, &failed_other, &idle}) {
    ASSERT_TRUE(catalog_->record_checkin(*c, t++));
  }
  const auto events = catalog_->list_events("dev-1", {});
  ASSERT_EQ(events->size(), 5u);
  EXPECT_EQ((*events)[1].image_id, 7);
  EXPECT_EQ((*events)[3].message, "bad digest again");
  EXPECT_EQ((*events)[4].result, std::nullopt);
}

TEST_F(SqliteCatalogTest, TheDeviceRowFollowsEveryChangeWithinOneSecondToo) {
  // A check-in that changes nothing but the time writes only last_seen; any other change is
  // written whole, whether or not the second moved on.
  DeviceCheckin c{"dev-1", "board-a", "1.0.0", "idle", {}, {}, {}};
  ASSERT_TRUE(catalog_->record_checkin(c, 100));
  c.state = "downloading";
  auto d = catalog_->record_checkin(c, 100);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->state, "downloading");
  c.result = "success";
  c.message = "done";
  c.version = "1.1.0";
  d = catalog_->record_checkin(c, 100);
  EXPECT_EQ(d->version, "1.1.0");
  EXPECT_EQ(d->last_result, "success");
  EXPECT_EQ(d->last_message, "done");
  // No result and no message reported: the last ones stand.
  c.result.reset();
  c.message.reset();
  d = catalog_->record_checkin(c, 100);
  EXPECT_EQ(d->last_result, "success");
  EXPECT_EQ(d->last_message, "done");
  EXPECT_EQ(d->last_seen, 100);
  d = catalog_->record_checkin(c, 101);
  EXPECT_EQ(d->last_seen, 101);
  EXPECT_EQ(d->first_seen, 100);
  EXPECT_EQ(d->last_result, "success");
  c.model = "board-b";
  d = catalog_->record_checkin(c, 101);
  EXPECT_EQ(d->model, "board-b");
  // What the rest of the catalog reads follows as well (the indexes on model and version).
  DeviceQuery by_model_and_version;
  by_model_and_version.model = "board-b";
  by_model_and_version.version = "1.1.0";
  auto page = catalog_->list_devices(by_model_and_version);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->devices.size(), 1u);
  EXPECT_EQ(page->devices[0].id, "dev-1");
  DeviceQuery by_old_model;
  by_old_model.model = "board-a";
  EXPECT_EQ(catalog_->list_devices(by_old_model)->total, 0u);
}

// Runs `sql` on a connection of its own, as another process would.
void exec_beside(const std::filesystem::path& db_path, const char* sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  char* msg = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &msg);
  EXPECT_EQ(rc, SQLITE_OK) << (msg != nullptr ? msg : "");
  sqlite3_free(msg);
  sqlite3_close(db);
}

TEST_F(SqliteCatalogTest, BatchOfCheckinsCommitsTogetherAndFailsOneByOne) {
  ASSERT_TRUE(catalog_->record_checkin({"dev-1", "board-a", "1.0.0", "idle", {}, {}, {}}, 100));
  // A device the database refuses, as a constraint or a full disk would refuse one row.
  exec_beside(dir_ / "fwdepot.db",
              "CREATE TRIGGER refuse BEFORE INSERT ON devices WHEN NEW.id = 'dev-bad' "
              "BEGIN SELECT RAISE(ABORT, 'refused'); END");
  const std::vector<DeviceCheckin> batch = {
      {"dev-1", "board-a", "1.1.0", "idle", "success", {}, {}},
      {"dev-bad", "board-a", "1.0.0", "idle", {}, {}, {}},
      {"dev-2", "board-b", "2.0.0", "downloading", {}, {}, 7},
      {"dev-2", "board-b", "2.0.0", "downloaded", {}, {}, 7},
  };
  auto recorded = catalog_->record_checkins(batch, 200);
  ASSERT_TRUE(recorded) << recorded.error();
  ASSERT_EQ(recorded->size(), 4u);
  // Each slot holds the device as it was before that check-in, in order.
  ASSERT_TRUE((*recorded)[0]) << (*recorded)[0].error();
  ASSERT_TRUE(*(*recorded)[0]);
  EXPECT_EQ((*recorded)[0]->value().version, "1.0.0");
  EXPECT_FALSE((*recorded)[1]);
  ASSERT_TRUE((*recorded)[2]);
  EXPECT_EQ(*(*recorded)[2], std::nullopt);
  ASSERT_TRUE((*recorded)[3]);
  ASSERT_TRUE(*(*recorded)[3]);
  EXPECT_EQ((*recorded)[3]->value().state, "downloading");
  // The refused one left nothing; the others stand, with their history.
  EXPECT_EQ(catalog_->find_device("dev-bad").error(), error::not_found);
  EXPECT_EQ(catalog_->find_device("dev-1")->version, "1.1.0");
  EXPECT_EQ(catalog_->find_device("dev-2")->state, "downloaded");
  EXPECT_EQ(catalog_->find_device("dev-2")->last_seen, 200);
  EXPECT_EQ(catalog_->list_events("dev-2", {})->size(), 2u);
  EXPECT_TRUE(catalog_->record_checkins({}, 300));
}

TEST_F(SqliteCatalogTest, BatchWhoseTransactionSQLiteRolledBackRecordsNothing) {
  // RAISE(ROLLBACK) ends the whole transaction, as SQLite does itself on a full disk.
  exec_beside(dir_ / "fwdepot.db",
              "CREATE TRIGGER ends BEFORE INSERT ON devices WHEN NEW.id = 'dev-bad' "
              "BEGIN SELECT RAISE(ROLLBACK, 'no room'); END");
  const std::vector<DeviceCheckin> batch = {
      {"dev-1", "board-a", "1.0.0", "idle", {}, {}, {}},
      {"dev-bad", "board-a", "1.0.0", "idle", {}, {}, {}},
      {"dev-2", "board-a", "1.0.0", "idle", {}, {}, {}},
  };
  auto recorded = catalog_->record_checkins(batch, 100);
  ASSERT_FALSE(recorded);
  EXPECT_NE(recorded.error().detail.find("no room"), std::string::npos) << recorded.error();
  EXPECT_EQ(catalog_->find_device("dev-1").error(), error::not_found);
  // The connection is usable again.
  EXPECT_TRUE(catalog_->record_checkins({batch.data(), 1}, 101));
}

TEST_F(SqliteCatalogTest, BatchThatCannotTakeTheWriteLockRecordsNothing) {
  // Another connection holds the write lock past the busy timeout.
  auto short_wait = SqliteCatalog::open(dir_ / "fwdepot.db", {.busy_timeout_ms = 50});
  ASSERT_TRUE(short_wait);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "fwdepot.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  const std::vector<DeviceCheckin> batch = {{"dev-1", "board-a", "1.0.0", "idle", {}, {}, {}}};
  auto recorded = (*short_wait)->record_checkins(batch, 100);
  ASSERT_FALSE(recorded);
  EXPECT_EQ(recorded.error(), error::busy);
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  EXPECT_EQ(catalog_->find_device("dev-1").error(), error::not_found);
}

// What another process sees: the sqlite3 shell's output for `sql`.
std::string outside(const std::filesystem::path& db_path, const std::string& sql) {
  const std::string cmd = "sqlite3 '" + db_path.string() + "' '" + sql + "'";
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cmd.c_str(), "r"), ::pclose);
  std::string out;
  std::array<char, 256> buf{};
  while (p && std::fgets(buf.data(), buf.size(), p.get()) != nullptr) {
    out += buf.data();
  }
  return out;
}

TEST_F(SqliteCatalogTest, ASecondConnectionInTheProcessLeavesTheFirstOnesLocks) {
  const auto path = dir_ / "fwdepot.db";
  ASSERT_TRUE(catalog_->record_checkin({"dev-1", "board-a", "1.0.0", "idle", {}, {}, {}}, 100));
  auto second = SqliteCatalog::open(path);
  ASSERT_TRUE(second);
  // Another process comes and goes. Had the second open dropped the first connection's locks,
  // it would take itself for the last user on closing, and checkpoint and delete the WAL that
  // this process goes on writing to.
  EXPECT_EQ(outside(path, "SELECT count(*) FROM devices"), "1\n");
  ASSERT_TRUE(catalog_->record_checkin({"dev-2", "board-a", "1.0.0", "idle", {}, {}, {}}, 100));
  ASSERT_TRUE((*second)->record_checkin({"dev-3", "board-a", "1.0.0", "idle", {}, {}, {}}, 100));
  EXPECT_EQ(outside(path, "SELECT count(*) FROM devices"), "3\n");
}

TEST_F(SqliteCatalogTest, RepeatedCheckinsFollowWhatElseWroteTheDevice) {
  // A check-in that brings nothing new is decided from what this connection wrote last; any
  // other write to the database (another connection's, or another statement of this one) must
  // make it read the device again.
  const auto path = dir_ / "fwdepot.db";
  const DeviceCheckin idle{"dev-1", "board-a", "1.0.0", "idle", {}, {}, {}};
  ASSERT_TRUE(catalog_->record_checkin(idle, 100));
  auto again = catalog_->record_checkin(idle, 101);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->last_seen, 101);
  EXPECT_EQ(catalog_->find_device("dev-1")->last_seen, 101);
  ASSERT_EQ(catalog_->list_events("dev-1", {})->size(), 1u);

  // Another process: the last event is no longer this check-in, the row changed.
  exec_beside(path,
              "INSERT INTO device_events(device_id, at, kind, state, version) "
              "VALUES ('dev-1', 102, 'offer', 'idle', '1.0.0')");
  exec_beside(path, "UPDATE devices SET version = '0.9.0', last_result = 'success'");
  auto recorded = catalog_->record_checkins({&idle, 1}, 103);
  ASSERT_TRUE(recorded);
  ASSERT_TRUE((*recorded)[0]);
  ASSERT_TRUE(*(*recorded)[0]);
  EXPECT_EQ((*(*recorded)[0])->version, "0.9.0");  // the device as it was, read again
  EXPECT_EQ((*(*recorded)[0])->last_result, "success");
  EXPECT_EQ(catalog_->find_device("dev-1")->version, "1.0.0");
  ASSERT_EQ(catalog_->list_events("dev-1", {})->size(), 3u);

  // Another process deletes the device: the next check-in registers it again.
  exec_beside(path, "DELETE FROM device_events; DELETE FROM devices");
  ASSERT_TRUE(catalog_->record_checkin(idle, 103));
  auto back = catalog_->find_device("dev-1");
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back->first_seen, 103);
  EXPECT_EQ(catalog_->list_events("dev-1", {})->size(), 1u);

  // This connection writes an event of its own: the check-in after it is history again.
  ASSERT_TRUE(catalog_->append_event(DeviceEvent{.id = 0,
                                                 .device_id = "dev-1",
                                                 .at = 104,
                                                 .kind = "offer",
                                                 .state = "idle",
                                                 .version = "1.0.0",
                                                 .result = {},
                                                 .message = {},
                                                 .image_id = {}}));
  ASSERT_TRUE(catalog_->record_checkin(idle, 104));
  const auto events = catalog_->list_events("dev-1", {});
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ(events->back().kind, "checkin");
  EXPECT_EQ(events->back().at, 104);
}

TEST_F(SqliteCatalogTest, PagesFiltersAndSortsDevices) {
  for (int i = 0; i < 25; ++i) {
    const std::string id = "dev-" + std::string(i < 10 ? "0" : "") + std::to_string(i);
    ASSERT_TRUE(catalog_->record_checkin(
        {id, i % 2 ? "odd" : "even", i < 5 ? "2.0.0" : "1.0.0", "idle", {}, {}, {}}, 1000 - i));
  }
  DeviceQuery q;
  q.limit = 10;
  auto page = catalog_->list_devices(q);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->total, 25u);
  ASSERT_EQ(page->devices.size(), 10u);
  EXPECT_EQ(page->devices[0].id, "dev-00");
  q.offset = 20;
  EXPECT_EQ(catalog_->list_devices(q)->devices.size(), 5u);
  DeviceQuery odd;
  odd.model = "odd";
  odd.version = "1.0.0";
  odd.sort = DeviceQuery::Sort::last_seen;
  odd.descending = true;
  page = catalog_->list_devices(odd);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->total, 10u);  // odd i in 5..24
  EXPECT_EQ(page->devices.front().id, "dev-05");
  DeviceQuery search;
  search.id_prefix = "dev-1";
  EXPECT_EQ(catalog_->list_devices(search)->total, 10u);
  // The prefix is a key range: its edges, an exact id, and prefixes that match nothing.
  for (const auto& [prefix, expected] :
       std::vector<std::pair<std::string, std::uint64_t>>{{"dev-2", 5u},
                                                          {"dev-24", 1u},
                                                          {"dev-24x", 0u},
                                                          {"dev-", 25u},
                                                          {"", 25u},
                                                          {"dev-/", 0u},
                                                          {"dev-_", 0u},
                                                          {"dev-%", 0u},
                                                          {"\xff", 0u},
                                                          {"dev-\xff", 0u}}) {
    DeviceQuery q;
    q.id_prefix = prefix;
    EXPECT_EQ(catalog_->list_devices(q)->total, expected) << prefix;
  }
  DeviceQuery hostile;
  hostile.id_prefix = "'; DROP TABLE devices; --";
  EXPECT_EQ(catalog_->list_devices(hostile)->total, 0u);
  EXPECT_EQ(catalog_->list_devices({})->total, 25u);
}

TEST_F(SqliteCatalogTest, OffersPreferDeviceTargetsThenTheNewest) {
  const std::int64_t old_img = add(image("fw", "1.0.0"));
  const std::int64_t new_img = add(image("fw", "2.0.0"));
  const std::int64_t pinned = add(image("fw", "1.5.0"));
  EXPECT_FALSE(*catalog_->find_offer("dev-1", "board-a"));

  auto m1 = catalog_->create_deployment({old_img, {}, {"board-a"}, false, 10});
  auto m2 = catalog_->create_deployment({new_img, {}, {"board-a"}, false, 20});
  ASSERT_TRUE(m1 && m2);
  auto offer = catalog_->find_offer("dev-1", "board-a");
  ASSERT_TRUE(offer && *offer);
  EXPECT_EQ((*offer)->image.id, new_img);  // newest at the model level
  EXPECT_FALSE(*catalog_->find_offer("dev-1", "board-z"));

  auto d = catalog_->create_deployment({pinned, {"dev-1"}, {}, true, 5});
  ASSERT_TRUE(d);
  offer = catalog_->find_offer("dev-1", "board-a");
  ASSERT_TRUE(offer && *offer);
  EXPECT_EQ((*offer)->image.id, pinned);  // device level wins although older
  EXPECT_TRUE((*offer)->deployment.allow_downgrade);
  EXPECT_EQ((*offer)->deployment.id, *d);
  EXPECT_TRUE((*offer)->deployment.devices.empty());  // never copied per check-in
  EXPECT_EQ((*catalog_->find_offer("dev-2", "board-a"))->image.id, new_img);

  ASSERT_TRUE(catalog_->cancel_deployment(*d, 30));
  EXPECT_EQ((*catalog_->find_offer("dev-1", "board-a"))->image.id, new_img);
  ASSERT_TRUE(catalog_->cancel_deployment(*m2, 31));
  EXPECT_EQ((*catalog_->find_offer("dev-1", "board-a"))->image.id, old_img);
  EXPECT_EQ(catalog_->cancel_deployment(*m2, 32).error(), error::not_found);
}

TEST_F(SqliteCatalogTest, OffersFollowChangesOtherConnectionsWrite) {
  // Rechecked on every call, so that what another process writes is seen without waiting.
  auto server = SqliteCatalog::open(dir_ / "fwdepot.db", {.offer_recheck = {}});
  ASSERT_TRUE(server);
  const std::int64_t img = add(image("fw", "1.0.0"));
  const std::int64_t other = add(image("fw", "2.0.0"));
  auto dep = catalog_->create_deployment({img, {}, {"board-a"}, false, 10});
  ASSERT_TRUE(dep);
  ASSERT_TRUE(*(*server)->find_offer("dev-1", "board-a"));  // loaded into memory
  const auto path = dir_ / "fwdepot.db";
  // Each kind of change another writer can make, each seen on the next call.
  exec_beside(path, "INSERT INTO deployment_targets VALUES (1, 'model', 'board-b')");
  EXPECT_EQ((*(*server)->find_offer("dev-2", "board-b"))->image.id, img);
  exec_beside(path, ("UPDATE deployments SET image_id = " + std::to_string(other)).c_str());
  EXPECT_EQ((*(*server)->find_offer("dev-1", "board-a"))->image.id, other);
  exec_beside(path, "UPDATE images SET description = 'changed'");
  EXPECT_EQ((*(*server)->find_offer("dev-1", "board-a"))->image.description, "changed");
  exec_beside(path, "DELETE FROM deployment_targets WHERE value = 'board-a'");
  EXPECT_FALSE(*(*server)->find_offer("dev-1", "board-a"));
  exec_beside(path, "UPDATE deployments SET cancelled_at = 20");
  EXPECT_FALSE(*(*server)->find_offer("dev-2", "board-b"));
}

TEST_F(SqliteCatalogTest, SummarizesTheFleetAndADeploymentsProgress) {
  const std::int64_t img = add(image("fw", "2.0.0"));
  auto dep = catalog_->create_deployment({img, {"x-9"}, {"board-a"}, false, 10});
  ASSERT_TRUE(dep);
  auto checkin = [&](std::string id, std::string model, std::string version, std::string state,
                     std::optional<std::string> result, std::int64_t at) {
    ASSERT_TRUE(catalog_->record_checkin({id, model, version, state, result, {}, {}}, at));
  };
  checkin("a-1", "board-a", "2.0.0", "idle", "success", 100);
  checkin("a-2", "board-a", "1.0.0", "downloading", "initial", 101);
  checkin("a-3", "board-a", "1.0.0", "idle", "integrity_failure", 102);
  checkin("b-1", "board-b", "1.0.0", "idle", "update_failed", 103);
  checkin("x-9", "board-x", "1.0.0", "updating", "initial", 104);  // targeted by id

  auto stats = catalog_->fleet_stats(10);
  ASSERT_TRUE(stats) << stats.error();
  EXPECT_EQ(stats->devices, 5);
  using Counts = std::vector<std::pair<std::string, std::int64_t>>;
  EXPECT_EQ(stats->by_version, (Counts{{"1.0.0", 4}, {"2.0.0", 1}}));
  EXPECT_EQ(stats->by_model, (Counts{{"board-a", 3}, {"board-b", 1}, {"board-x", 1}}));
  EXPECT_EQ(stats->by_state, (Counts{{"idle", 3}, {"downloading", 1}, {"updating", 1}}));
  ASSERT_EQ(stats->recent_failures.size(), 2u);
  EXPECT_EQ(stats->recent_failures[0].id, "b-1");  // newest first
  EXPECT_EQ(stats->recent_failures[1].id, "a-3");
  EXPECT_EQ(catalog_->fleet_stats(1)->recent_failures.size(), 1u);

  auto progress = catalog_->deployment_progress(*dep);
  ASSERT_TRUE(progress) << progress.error();
  EXPECT_EQ(progress->targeted, 4);  // a-1, a-2, a-3 by model, x-9 by id; not b-1
  EXPECT_EQ(progress->at_version, 1);
  EXPECT_EQ(progress->in_progress, 2);
  EXPECT_EQ(progress->failed, 1);
  EXPECT_EQ(catalog_->deployment_progress(*dep + 100).error(), error::not_found);
}

TEST_F(SqliteCatalogTest, RefusesDeploymentsWithoutImageOrTargets) {
  const std::int64_t id = add(image("fw", "1.0.0"));
  EXPECT_EQ(catalog_->create_deployment({id, {}, {}, false, 1}).error(), error::invalid_argument);
  EXPECT_EQ(catalog_->create_deployment({id + 100, {"d"}, {}, false, 1}).error(), error::not_found);
  EXPECT_TRUE(catalog_->list_deployments()->empty());
}

TEST_F(SqliteCatalogTest, KeepsTokenHashesAndRevokesByName) {
  const std::string hash(64, 'a');
  ASSERT_TRUE(catalog_->create_token("alice", hash, 10));
  EXPECT_EQ(catalog_->create_token("alice", std::string(64, 'b'), 11).error(), error::conflict);
  EXPECT_EQ(catalog_->create_token("bob", hash, 11).error(), error::conflict);
  auto found = catalog_->find_live_token(hash);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->name, "alice");
  ASSERT_TRUE(catalog_->revoke_token("alice", 20));
  EXPECT_EQ(catalog_->find_live_token(hash).error(), error::not_found);
  EXPECT_EQ(catalog_->revoke_token("alice", 21).error(), error::not_found);
  // The name is free again once its token is revoked.
  EXPECT_TRUE(catalog_->create_token("alice", std::string(64, 'c'), 22));
  EXPECT_EQ(catalog_->list_tokens()->size(), 2u);
  EXPECT_EQ(catalog_->create_token("x", "short", 1).error(), error::invalid_argument);
}

TEST_F(SqliteCatalogTest, StoresPskByIdentity) {
  ASSERT_TRUE(catalog_->put_psk({"dev-1", "id-1", std::string("\x00\x01key", 5)}, 1));
  auto psk = catalog_->find_psk("id-1");
  ASSERT_TRUE(psk);
  EXPECT_EQ(psk->device_id, "dev-1");
  EXPECT_EQ(psk->key, std::string("\x00\x01key", 5));
  EXPECT_EQ(catalog_->put_psk({"dev-2", "id-1", "k"}, 2).error(), error::conflict);
  ASSERT_TRUE(catalog_->put_psk({"dev-1", "id-1b", "k2"}, 3));  // rotation
  EXPECT_EQ(catalog_->find_psk("id-1").error(), error::not_found);
  ASSERT_TRUE(catalog_->delete_psk("dev-1"));
  EXPECT_EQ(catalog_->delete_psk("dev-1").error(), error::not_found);
}

TEST_F(SqliteCatalogTest, RevokesEveryCertificateOfADevice) {
  ASSERT_TRUE(catalog_->record_certificate({"aa01", "dev-1", "m", 1, 100, {}}));
  ASSERT_TRUE(catalog_->record_certificate({"aa02", "dev-1", "m", 2, 100, {}}));
  ASSERT_TRUE(catalog_->record_certificate({"bb01", "dev-2", "m", 3, 100, {}}));
  EXPECT_EQ(catalog_->record_certificate({"aa01", "dev-9", "m", 1, 1, {}}).error(),
            error::conflict);
  EXPECT_EQ(*catalog_->revoke_certificates("dev-1", 50), 2u);
  EXPECT_EQ(*catalog_->revoke_certificates("dev-1", 60), 0u);  // already revoked
  EXPECT_EQ(catalog_->revoke_certificates("nobody", 60).error(), error::not_found);
  auto revoked = catalog_->revoked_certificates();
  ASSERT_TRUE(revoked);
  ASSERT_EQ(revoked->size(), 2u);
  EXPECT_EQ((*revoked)[0].serial_hex, "aa01");
  EXPECT_EQ((*revoked)[0].revoked_at, 50);
}

TEST_F(SqliteCatalogTest, RegistersAPollingDeviceOnceAndKeepsItsAttributes) {
  auto first = catalog_->touch_device("ddi-1", "m1", 100);
  ASSERT_TRUE(first) << first.error();
  EXPECT_EQ(first->version, "");
  EXPECT_EQ(first->state, "idle");
  EXPECT_EQ(first->attributes, "{}");
  auto again = catalog_->touch_device("ddi-1", "", 160);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->model, "m1");
  EXPECT_EQ(again->first_seen, 100);
  EXPECT_EQ(again->last_seen, 160);
  auto events = catalog_->list_events("ddi-1", {});
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].kind, "registered");

  ASSERT_TRUE(catalog_->put_attributes("ddi-1", R"({"hw":"rev2"})", 170));
  EXPECT_EQ(catalog_->find_device("ddi-1")->attributes, R"({"hw":"rev2"})");
  EXPECT_EQ(catalog_->put_attributes("nobody", "{}", 170).error(), error::not_found);
}

TEST_F(SqliteCatalogTest, ActionsOpenOncePerDeploymentAndFollowCancellation) {
  const auto img = add(image("fw", "2.0.0"));
  ASSERT_TRUE(catalog_->touch_device("ddi-1", "board-a", 100));
  auto dep =
      catalog_->create_deployment({img, {"ddi-1"}, {}, false, 100, ActionType::download_only});
  ASSERT_TRUE(dep);
  EXPECT_EQ(catalog_->list_deployments()->front().action_type, ActionType::download_only);

  auto a = catalog_->open_action("ddi-1", *dep, 110);
  ASSERT_TRUE(a) << a.error();
  EXPECT_EQ(a->status, ActionStatus::open);
  EXPECT_EQ(a->image_id, img);
  EXPECT_EQ(a->type, ActionType::download_only);
  EXPECT_EQ(catalog_->open_action("ddi-1", *dep, 120)->id, a->id);  // the same action
  EXPECT_EQ(catalog_->open_action("nobody", *dep, 120).error(), error::not_found);
  ASSERT_EQ(catalog_->active_actions("ddi-1")->size(), 1u);

  ASSERT_TRUE(catalog_->cancel_deployment(*dep, 130));
  EXPECT_EQ(catalog_->find_action(a->id)->status, ActionStatus::canceling);
  EXPECT_EQ(catalog_->request_action_cancel(a->id, 131).error(), error::conflict);
  EXPECT_EQ(catalog_->request_action_cancel(a->id + 100, 131).error(), error::not_found);

  DeviceEvent e{.id = 0,
                .device_id = "ddi-1",
                .at = 140,
                .kind = "feedback",
                .state = "idle",
                .version = "",
                .result = std::nullopt,
                .message = std::string("stopped"),
                .image_id = img};
  // Feedback against a status the action no longer has changes nothing.
  auto stale = catalog_->record_action_update({a->id, ActionStatus::open, ActionStatus::closed, e});
  EXPECT_EQ(stale.error(), error::conflict);
  EXPECT_EQ(catalog_->list_events("ddi-1", {})->size(), 1u);

  auto done =
      catalog_->record_action_update({a->id, ActionStatus::canceling, ActionStatus::canceled, e});
  ASSERT_TRUE(done) << done.error();
  EXPECT_EQ(done->last_message, "stopped");
  EXPECT_EQ(done->last_seen, 140);
  EXPECT_EQ(catalog_->find_action(a->id)->status, ActionStatus::canceled);
  EXPECT_TRUE(catalog_->active_actions("ddi-1")->empty());
  EXPECT_EQ(catalog_->list_events("ddi-1", {})->back().kind, "feedback");
}

}  // namespace
}  // namespace fwdepot::storage
