// SPDX-License-Identifier: Apache-2.0
// The group-commit writer against a real SQLite file, with a second connection standing in for
// the server's other writers.
#include "service/checkin_writer.hpp"

#include "fwdepot/storage/sqlite_catalog.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fwdepot::server {
namespace {

using fwdepot::testing::TempDir;

constexpr std::int64_t kNow = 1000;

storage::DeviceCheckin checkin(int i) {
  return {"dev-" + std::to_string(i), "board-a", "1.0.0", "idle", {}, {}, {}};
}

std::unique_ptr<storage::Catalog> open(const TempDir& dir, int busy_timeout_ms = 5000) {
  auto c = storage::SqliteCatalog::open(dir / "fwdepot.db", {.busy_timeout_ms = busy_timeout_ms});
  EXPECT_TRUE(c) << c.error();
  return c ? std::move(*c) : nullptr;
}

// Holds SQLite's write lock on the file, as an admin upload's transaction would.
class WriteLock {
 public:
  explicit WriteLock(const TempDir& dir) {
    EXPECT_EQ(sqlite3_open((dir / "fwdepot.db").c_str(), &db_), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  }
  ~WriteLock() { release(); }
  void release() {
    if (db_ != nullptr) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      sqlite3_close(db_);
      db_ = nullptr;
    }
  }

 private:
  sqlite3* db_ = nullptr;
};

TEST(CheckinWriter, ConcurrentCheckinsShareCommitsAndAreAllRecorded) {
  TempDir dir;
  auto reader = open(dir);
  constexpr int kThreads = 4;
  constexpr int kEach = 50;
  constexpr int kAll = kThreads * kEach;
  std::mutex m;
  std::condition_variable all_done;
  int answered = 0;
  int first_sight = 0;
  CheckinWriter writer(open(dir), [] { return kNow; });
  {
    // While another connection holds the write lock, the writer waits in its first batch and
    // everything submitted meanwhile queues up for the next one.
    WriteLock lock(dir);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          writer.submit(checkin(t * kEach + i), [&](storage::RecordedCheckin r) {
            std::lock_guard g(m);
            EXPECT_TRUE(r) << r.error();
            first_sight += (r && !*r) ? 1 : 0;
            if (++answered == kAll) {
              all_done.notify_one();
            }
          });
        }
      });
    }
    for (auto& t : threads) {
      t.join();
    }
  }
  {
    std::unique_lock g(m);
    ASSERT_TRUE(all_done.wait_for(g, std::chrono::seconds(30), [&] { return answered == kAll; }));
  }
  EXPECT_EQ(first_sight, kAll);
  // The first batch took what had arrived when the writer woke, and could not commit before the
  // lock went; everything else waited for it and went in one more.
  EXPECT_EQ(writer.checkins(), static_cast<std::uint64_t>(kAll));
  EXPECT_GE(writer.commits(), 1u);
  EXPECT_LE(writer.commits(), 2u);
  for (int i = 0; i < kAll; ++i) {
    auto d = reader->find_device("dev-" + std::to_string(i));
    ASSERT_TRUE(d) << i;
    EXPECT_EQ(d->last_seen, kNow);
  }
}

TEST(CheckinWriter, WritesWhatIsQueuedBeforeItStops) {
  TempDir dir;
  auto reader = open(dir);
  int answered = 0;  // callbacks run on the writer's thread, joined by the destructor
  {
    CheckinWriter writer(open(dir), [] { return kNow; });
    for (int i = 0; i < 20; ++i) {
      writer.submit(checkin(i), [&](storage::RecordedCheckin r) { answered += r ? 1 : 0; });
    }
  }
  EXPECT_EQ(answered, 20);
  EXPECT_EQ(reader->list_devices({})->total, 20u);
}

TEST(CheckinWriter, DeliversEachBatchsCallbacksInOneHop) {
  TempDir dir;
  std::mutex m;
  std::condition_variable delivered;
  std::vector<std::function<void()>> hops;  // what Deliver was handed, run here
  {
    CheckinWriter writer(
        open(dir), [] { return kNow; }, 256,
        [&](std::function<void()> f) {
          std::lock_guard g(m);
          hops.push_back(std::move(f));
          delivered.notify_one();
        });
    int answered = 0;
    {
      WriteLock lock(dir);  // the first batch waits: the other nine queue up behind it
      writer.submit(checkin(0), [&](storage::RecordedCheckin r) { answered += r ? 1 : 0; });
      for (int i = 1; i < 10; ++i) {
        writer.submit(checkin(i), [&](storage::RecordedCheckin r) { answered += r ? 1 : 0; });
      }
    }
    {
      std::unique_lock g(m);
      ASSERT_TRUE(delivered.wait_for(g, std::chrono::seconds(30), [&] {
        return hops.size() == writer.commits() && writer.checkins() == 10;
      }));
    }
    // Nothing ran on the writer's thread: every answer waits for its hop.
    EXPECT_EQ(answered, 0);
    EXPECT_LE(hops.size(), 2u);
    for (auto& hop : hops) {
      hop();
    }
    EXPECT_EQ(answered, 10);
  }
}

TEST(CheckinWriter, ADeferredWakeUpTakesEverythingSubmittedBeforeItRuns) {
  TempDir dir;
  auto reader = open(dir);
  std::vector<std::function<void()>> wakes;  // what defer_wake was handed, run here
  std::mutex m;
  std::condition_variable all_done;
  int answered = 0;
  {
    CheckinWriter writer(
        open(dir), [] { return kNow; }, 256, nullptr,
        [&](std::function<void()> f) { wakes.push_back(std::move(f)); });
    for (int i = 0; i < 10; ++i) {
      writer.submit(checkin(i), [&](storage::RecordedCheckin r) {
        std::lock_guard g(m);
        answered += r ? 1 : 0;
        all_done.notify_one();
      });
    }
    // One wake-up handed out for the ten, and the writer not woken before it runs.
    ASSERT_EQ(wakes.size(), 1u);
    EXPECT_EQ(writer.commits(), 0u);
    wakes.front()();
    {
      std::unique_lock g(m);
      ASSERT_TRUE(all_done.wait_for(g, std::chrono::seconds(30), [&] { return answered == 10; }));
    }
    EXPECT_EQ(writer.commits(), 1u);
    // Once it ran, the next submit hands out a new one.
    writer.submit(checkin(10), [&](storage::RecordedCheckin r) { answered += r ? 1 : 0; });
    EXPECT_EQ(wakes.size(), 2u);
  }  // the writer writes what is queued before it stops, woken or not
  EXPECT_EQ(answered, 11);
  EXPECT_EQ(reader->list_devices({})->total, 11u);
}

TEST(CheckinWriter, BatchThatCannotBeWrittenFailsEveryCheckinInIt) {
  TempDir dir;
  auto reader = open(dir);
  std::vector<storage::RecordedCheckin> results;
  std::mutex m;
  {
    WriteLock lock(dir);  // held past the writer's busy timeout, and past the writer
    CheckinWriter writer(open(dir, 20), [] { return kNow; });
    for (int i = 0; i < 10; ++i) {
      writer.submit(checkin(i), [&](storage::RecordedCheckin r) {
        std::lock_guard g(m);
        results.push_back(std::move(r));
      });
    }
    // Destroyed while the lock is still held: every queued check-in gets its answer.
  }
  ASSERT_EQ(results.size(), 10u);
  for (const auto& r : results) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), storage::error::busy);
  }
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(reader->find_device("dev-" + std::to_string(i)).error(), storage::error::not_found);
  }
}

}  // namespace
}  // namespace fwdepot::server
