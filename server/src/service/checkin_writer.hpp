// SPDX-License-Identifier: Apache-2.0
// Group commit for device check-ins: a thread of its own writes queued check-ins in batches, one
// transaction and one fsync per batch, so that the threads serving connections never wait on the
// disk and a burst of check-ins costs a few commits instead of one each.
#pragma once

#include "fwdepot/storage/catalog.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace fwdepot::server {

class CheckinWriter {
 public:
  using Done = std::function<void(storage::RecordedCheckin)>;
  using Clock = std::function<std::int64_t()>;  // unix seconds, read once per batch
  /// Takes a batch's callbacks, all in one function, to where they should run.
  using Deliver = std::function<void(std::function<void()>)>;

  /// `catalog` is the writer's own connection to the database (SQLite arbitrates between it and
  /// the connection everything else uses). At most `max_batch` check-ins go in one commit.
  /// Without `deliver`, each batch's callbacks run on the writer's thread; with it, they run
  /// wherever `deliver` sends them, in one hop per batch rather than one per check-in.
  /// Without `defer_wake`, each submit wakes the writer; with it, the first submit that finds
  /// the writer not yet called hands `defer_wake` the wake-up, and the submits until it runs
  /// join the same batch. Posted to the serving thread's io_context, the writer then wakes once
  /// per round of the event loop (every check-in whose request arrived in it) instead of once
  /// per check-in: fewer thread wake-ups and fewer transactions.
  CheckinWriter(std::unique_ptr<storage::Catalog> catalog, Clock clock, std::size_t max_batch = 256,
                Deliver deliver = nullptr, Deliver defer_wake = nullptr);
  /// Records what is queued, runs its callbacks, and joins the thread.
  ~CheckinWriter();
  CheckinWriter(const CheckinWriter&) = delete;
  CheckinWriter& operator=(const CheckinWriter&) = delete;

  /// Queues `c`. `done` runs (see Deliver) once the batch holding `c` has committed, with the
  /// device as it was before (see Catalog::record_checkins), or with the error that kept the
  /// check-in (or its whole batch) from being recorded. It must not block.
  void submit(storage::DeviceCheckin c, Done done);

  /// Batches written so far (committed or failed), and the check-ins in them.
  [[nodiscard]] std::uint64_t commits() const;
  [[nodiscard]] std::uint64_t checkins() const;

 private:
  // One batch's callbacks and what each gets.
  struct Callbacks {
    std::vector<Done> done;
    std::vector<storage::RecordedCheckin> recorded;
    void run();  // each once; a callback that throws loses only its own answer
  };

  void run();
  void wake();

  std::unique_ptr<storage::Catalog> catalog_;
  Clock clock_;
  std::size_t max_batch_;
  Deliver deliver_;
  Deliver defer_wake_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::pair<storage::DeviceCheckin, Done>> queue_;
  bool wake_deferred_ = false;  // a wake-up is with defer_wake_, not yet run
  bool stopping_ = false;
  std::uint64_t commits_ = 0;
  std::uint64_t checkins_ = 0;
  std::thread thread_;  // last: starts after everything it uses
};

}  // namespace fwdepot::server
