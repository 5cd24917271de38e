// SPDX-License-Identifier: Apache-2.0
#include "service/checkin_writer.hpp"

#include <algorithm>
#include <exception>
#include <string>
#include <utility>
#include <vector>

namespace fwdepot::server {

CheckinWriter::CheckinWriter(std::unique_ptr<storage::Catalog> catalog, Clock clock,
                             std::size_t max_batch, Deliver deliver, Deliver defer_wake)
    : catalog_(std::move(catalog)),
      clock_(std::move(clock)),
      max_batch_(std::max<std::size_t>(1, max_batch)),
      deliver_(std::move(deliver)),
      defer_wake_(std::move(defer_wake)),
      thread_([this] { run(); }) {}

CheckinWriter::~CheckinWriter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void CheckinWriter::submit(storage::DeviceCheckin c, Done done) {
  bool defer = false;
  {
    std::lock_guard lock(mutex_);
    queue_.emplace_back(std::move(c), std::move(done));
    if (defer_wake_) {
      defer = !std::exchange(wake_deferred_, true);
      if (!defer) {
        return;  // the wake-up already handed out takes this one too
      }
    }
  }
  if (defer) {
    try {
      defer_wake_([this] { wake(); });
      return;
    } catch (const std::exception&) {
      // could not be handed out: wake now rather than leave the check-in waiting
    }
  }
  wake();
}

void CheckinWriter::wake() {
  {
    std::lock_guard lock(mutex_);
    wake_deferred_ = false;
  }
  wake_.notify_one();
}

std::uint64_t CheckinWriter::commits() const {
  std::lock_guard lock(mutex_);
  return commits_;
}

std::uint64_t CheckinWriter::checkins() const {
  std::lock_guard lock(mutex_);
  return checkins_;
}

// No timer gathers a batch: whatever arrives while one batch commits forms the next, so a lone
// check-in is written at once and a burst shares its fsyncs.
void CheckinWriter::run() {
  std::vector<storage::DeviceCheckin> batch;
  // Shared with the function that runs them, which Deliver may copy.
  auto callbacks = std::make_shared<Callbacks>();
  while (true) {
    {
      std::unique_lock lock(mutex_);
      // A wake-up handed out is waited for even by a writer that is up already: everything
      // submitted until it runs goes in one batch.
      wake_.wait(lock, [this] { return stopping_ || (!queue_.empty() && !wake_deferred_); });
      if (queue_.empty()) {
        return;  // stopping, and everything queued is written
      }
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(queue_.front().first));
        callbacks->done.push_back(std::move(queue_.front().second));
        queue_.pop_front();
      }
    }
    // Nothing may escape this thread: every callback runs, and a failure is an answer.
    auto recorded = [&]() -> result<std::vector<storage::RecordedCheckin>> {
      try {
        return catalog_->record_checkins(batch, clock_());
      } catch (const std::exception& e) {
        return Error(storage::error::io_error, std::string("check-in batch: ") + e.what());
      }
    }();
    {
      std::lock_guard lock(mutex_);
      ++commits_;
      checkins_ += batch.size();
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      callbacks->recorded.push_back(recorded ? std::move((*recorded)[i])
                                             : storage::RecordedCheckin(recorded.error()));
    }
    batch.clear();
    if (deliver_) {
      try {
        deliver_([callbacks] { callbacks->run(); });
      } catch (const std::exception&) {
        callbacks->run();  // could not be sent: run here rather than lose the answers
      }
    } else {
      callbacks->run();
    }
    callbacks = std::make_shared<Callbacks>();
  }
}

void CheckinWriter::Callbacks::run() {
  for (std::size_t i = 0; i < done.size(); ++i) {
    try {
      done[i](std::move(recorded[i]));
    } catch (const std::exception&) {
      // Its request is lost (the connection times out); the other callbacks still run.
    }
  }
  done.clear();
  recorded.clear();
}

}  // namespace fwdepot::server
