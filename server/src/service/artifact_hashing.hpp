// SPDX-License-Identifier: Apache-2.0
// DDI's artifact hashes (SHA-1 and MD5) of uploaded images, computed after the upload has been
// answered. They were a third of an upload's CPU time, spent while the admin waited, for a
// checksum only hawkBit agents use: the image itself is verified against the signed manifest's
// SHA-256 as it streams in.
#pragma once

#include "service/api.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace fwdepot::server {

/// Hashes queued images one at a time on a thread of its own at the lowest CPU priority (nice
/// 19): it takes what serving leaves. An image is offered over DDI only once its hashes are
/// stored (DdiService::poll). One still queued when the server stops is hashed at the next
/// start (storage::recover_storage), as images from before these hashes were recorded are.
class ArtifactHashing {
 public:
  /// Runs on the hashing thread after each attempt: the image's id, and whether its hashes are
  /// stored now (false: it was deleted meanwhile, or the attempt failed, which is logged and
  /// tried again kRetry after the queue ran empty).
  using Done = std::function<void(std::int64_t, bool)>;

  explicit ArtifactHashing(Backend& backend, Done done = nullptr);
  /// Finishes the image being hashed, drops the rest of the queue, and joins the thread.
  ~ArtifactHashing();
  ArtifactHashing(const ArtifactHashing&) = delete;
  ArtifactHashing& operator=(const ArtifactHashing&) = delete;

  /// Queues image `id`; one that has its hashes already is skipped.
  void add(std::int64_t id);

 private:
  static constexpr std::chrono::seconds kRetry{30};
  enum class Outcome { stored, gone, failed };

  void run();
  Outcome hash(std::int64_t id);

  Backend& backend_;
  Done done_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::int64_t> queue_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after everything it uses
};

}  // namespace fwdepot::server
