// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/digest.hpp"

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/openssl.hpp"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

namespace fwdepot {

// SHA-1 and MD5 together cost more than twice SHA-256 (MD5 alone runs at about a third of
// SHA-256's speed), so they run on a thread of their own while the caller goes on receiving,
// writing and SHA-256-hashing the same bytes. The bytes are copied into a bounded queue; a
// caller that outruns the hashes waits for room.
struct ArtifactHasher::State {
  static constexpr std::size_t kMaxQueuedBytes = 8 * 1024 * 1024;

  openssl::MdCtxPtr sha1{EVP_MD_CTX_new()};
  openssl::MdCtxPtr md5{EVP_MD_CTX_new()};
  std::mutex mutex;
  std::condition_variable work;   // the worker waits for chunks or the end
  std::condition_variable space;  // update() waits for the queue to drain below the bound
  std::deque<std::string> queue;
  std::size_t queued_bytes = 0;
  bool done = false;
  std::thread worker;        // started by the first update()
  bool inline_only = false;  // the thread could not be started

  // Abandoned (an upload refused half-way): what is still queued is dropped, not hashed.
  ~State() {
    {
      std::lock_guard lock(mutex);
      queue.clear();
      queued_bytes = 0;
    }
    stop();
  }

  void run() {
    while (true) {
      std::string chunk;
      {
        std::unique_lock lock(mutex);
        work.wait(lock, [this] { return done || !queue.empty(); });
        if (queue.empty()) {
          return;
        }
        chunk = std::move(queue.front());
        queue.pop_front();
        queued_bytes -= chunk.size();
      }
      space.notify_one();
      EVP_DigestUpdate(sha1.get(), chunk.data(), chunk.size());
      EVP_DigestUpdate(md5.get(), chunk.data(), chunk.size());
    }
  }

  // Lets the worker hash what is queued, then joins it.
  void stop() {
    if (!worker.joinable()) {
      return;
    }
    {
      std::lock_guard lock(mutex);
      done = true;
    }
    work.notify_one();
    worker.join();
  }
};

namespace {

std::string final_hex(EVP_MD_CTX* ctx) {
  std::vector<unsigned char> out(EVP_MAX_MD_SIZE);
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx, out.data(), &n) != 1) {
    throw std::runtime_error("digest final failed");
  }
  out.resize(n);
  return hex_encode(out);
}

}  // namespace

ArtifactHasher::ArtifactHasher() : state_(std::make_unique<State>()) {
  // Both are in OpenSSL's default provider; failing here means a broken OpenSSL, not bad input.
  if (!state_->sha1 || !state_->md5 ||
      EVP_DigestInit_ex(state_->sha1.get(), EVP_sha1(), nullptr) != 1 ||
      EVP_DigestInit_ex(state_->md5.get(), EVP_md5(), nullptr) != 1) {
    throw std::runtime_error("SHA-1/MD5 unavailable in this OpenSSL");
  }
}
ArtifactHasher::~ArtifactHasher() = default;
ArtifactHasher::ArtifactHasher(ArtifactHasher&&) noexcept = default;
ArtifactHasher& ArtifactHasher::operator=(ArtifactHasher&&) noexcept = default;

void ArtifactHasher::update(std::string_view bytes) {
  State& s = *state_;
  if (bytes.empty()) {
    return;
  }
  if (!s.worker.joinable() && !s.inline_only) {
    try {
      s.worker = std::thread([&s] { s.run(); });
    } catch (const std::system_error&) {
      s.inline_only = true;  // no thread to be had: hash on the caller's
    }
  }
  if (s.inline_only) {
    EVP_DigestUpdate(s.sha1.get(), bytes.data(), bytes.size());
    EVP_DigestUpdate(s.md5.get(), bytes.data(), bytes.size());
    return;
  }
  {
    std::unique_lock lock(s.mutex);
    s.space.wait(lock, [&s] { return s.queued_bytes < State::kMaxQueuedBytes; });
    s.queue.emplace_back(bytes);
    s.queued_bytes += bytes.size();
  }
  s.work.notify_one();
}

ArtifactHashes ArtifactHasher::finish() {
  state_->stop();
  return {final_hex(state_->sha1.get()), final_hex(state_->md5.get())};
}

}  // namespace fwdepot
