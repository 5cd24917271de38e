// SPDX-License-Identifier: Apache-2.0
#include "service/artifact_hashing.hpp"

#include "fwdepot/storage/image_store.hpp"
#include "log.hpp"

#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <exception>
#include <utility>
#include <vector>

namespace fwdepot::server {

ArtifactHashing::ArtifactHashing(Backend& backend, Done done)
    : backend_(backend), done_(std::move(done)), thread_([this] { run(); }) {}

ArtifactHashing::~ArtifactHashing() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void ArtifactHashing::add(std::int64_t id) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(id);
  }
  wake_.notify_one();
}

void ArtifactHashing::run() {
  // This thread only (a thread id names one thread to setpriority); the hasher's own thread,
  // which it starts, inherits the value. Failing to lower it is harmless.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19);
  std::vector<std::int64_t> failed;  // tried again once the queue is empty and kRetry passed
  while (true) {
    std::int64_t id = 0;
    {
      std::unique_lock lock(mutex_);
      if (failed.empty()) {
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      } else if (!wake_.wait_for(lock, kRetry, [this] { return stopping_ || !queue_.empty(); })) {
        queue_.insert(queue_.end(), failed.begin(), failed.end());
        failed.clear();
      }
      if (stopping_) {
        return;
      }
      id = queue_.front();
      queue_.pop_front();
    }
    Outcome outcome = Outcome::failed;
    try {
      outcome = hash(id);
    } catch (const std::exception& e) {
      spdlog::error("artifact_hashes image={} error={}", id, log_value(e.what()));
    }
    if (outcome == Outcome::failed) {
      failed.push_back(id);
    }
    // This thread's heap (glibc gives each thread an arena) would keep the job's buffers for
    // the process's life: an idle server should hold nothing of a past upload.
    (void)::malloc_trim(0);
    if (done_) {
      done_(id, outcome == Outcome::stored);
    }
  }
}

ArtifactHashing::Outcome ArtifactHashing::hash(std::int64_t id) {
  const auto started = std::chrono::steady_clock::now();
  auto image = backend_.with_catalog([&](storage::Catalog& c) { return c.find_image(id); });
  if (!image) {
    if (image.error() == storage::error::not_found) {
      return Outcome::gone;  // deleted meanwhile: nothing to do
    }
    spdlog::error("artifact_hashes image={} error={}", id, log_value(image.error().message()));
    return Outcome::failed;
  }
  if (image->has_artifact_hashes()) {
    return Outcome::stored;
  }
  // Read back without the catalog's lock: the blob is committed and immutable.
  auto hashes = storage::hash_blob(backend_.blobs(), image->sha256);
  if (!hashes) {
    spdlog::error("artifact_hashes image={} error={}", id, log_value(hashes.error().message()));
    return Outcome::failed;
  }
  auto stored = backend_.with_catalog([&](storage::Catalog& c) {
    return c.set_artifact_fields(id, image->filename, hashes->sha1_hex, hashes->md5_hex);
  });
  if (!stored) {
    if (stored.error() == storage::error::not_found) {
      return Outcome::gone;
    }
    spdlog::error("artifact_hashes image={} error={}", id, log_value(stored.error().message()));
    return Outcome::failed;
  }
  const auto ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("artifact_hashes image={} bytes={} ms={:.1f}", id, image->size_bytes, ms);
  return Outcome::stored;
}

}  // namespace fwdepot::server
