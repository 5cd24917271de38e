// SPDX-License-Identifier: Apache-2.0
#include "service/artifact_hashing.hpp"

#include "fwdepot/storage/image_store.hpp"
#include "log.hpp"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <exception>
#include <utility>

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
  while (true) {
    std::int64_t id = 0;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) {
        return;
      }
      id = queue_.front();
      queue_.pop_front();
    }
    bool stored = false;
    try {
      stored = hash(id);
    } catch (const std::exception& e) {
      spdlog::error("artifact_hashes image={} error={}", id, log_value(e.what()));
    }
    if (done_) {
      done_(id, stored);
    }
  }
}

bool ArtifactHashing::hash(std::int64_t id) {
  const auto started = std::chrono::steady_clock::now();
  auto image = backend_.with_catalog([&](storage::Catalog& c) { return c.find_image(id); });
  if (!image) {
    if (image.error() != storage::error::not_found) {  // deleted meanwhile: nothing to do
      spdlog::error("artifact_hashes image={} error={}", id, log_value(image.error().message()));
    }
    return false;
  }
  if (!image->sha1_hex.empty() && !image->md5_hex.empty()) {
    return true;
  }
  // Read back without the catalog's lock: the blob is committed and immutable.
  auto hashes = storage::hash_blob(backend_.blobs(), image->sha256);
  if (!hashes) {
    spdlog::error("artifact_hashes image={} error={}", id, log_value(hashes.error().message()));
    return false;
  }
  auto stored = backend_.with_catalog([&](storage::Catalog& c) {
    return c.set_artifact_fields(id, image->filename, hashes->sha1_hex, hashes->md5_hex);
  });
  if (!stored) {
    if (stored.error() != storage::error::not_found) {
      spdlog::error("artifact_hashes image={} error={}", id, log_value(stored.error().message()));
    }
    return false;
  }
  const auto ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("artifact_hashes image={} bytes={} ms={:.1f}", id, image->size_bytes, ms);
  return true;
}

}  // namespace fwdepot::server
