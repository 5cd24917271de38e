// SPDX-License-Identifier: Apache-2.0
// A TCP relay on 127.0.0.1 between a client and a server, for faults TLS cannot be asked to
// produce: it can cut a connection, or freeze it, once the server has sent N bytes on it.
// The bytes it forwards are opaque (TLS); only their count is looked at.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace fwdepot::testing {

class Relay {
 public:
  explicit Relay(std::uint16_t target_port) : target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = loopback(0);
    socklen_t len = sizeof addr;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_, 16) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("relay: cannot listen");
    }
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~Relay() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    acceptor_.join();
    ::close(listener_);
    std::vector<std::thread> pumps;
    {
      std::lock_guard lock(mutex_);
      for (int fd : open_fds_) {
        ::shutdown(fd, SHUT_RDWR);
      }
      pumps.swap(pumps_);
    }
    for (auto& t : pumps) {
      t.join();
    }
  }

  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  std::uint16_t port() const { return port_; }

  /// The next connection on which the server sends more than `bytes` is cut there (once).
  void cut_once_after(std::uint64_t bytes) { cut_after_ = bytes; }
  /// The next connection on which the server sends more than `bytes` stops forwarding there
  /// and stays open, frozen (once). wait_until_frozen() returns when that has happened.
  void freeze_once_after(std::uint64_t bytes) { freeze_after_ = bytes; }
  bool wait_until_frozen(std::chrono::seconds limit) {
    std::unique_lock lock(mutex_);
    return frozen_cv_.wait_for(lock, limit, [this] { return frozen_; });
  }
  /// Connections accepted so far, and how many were cut.
  int connections() const { return connections_; }
  int cuts() const { return cuts_; }

 private:
  static sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }

  void accept_loop() {
    while (!stopping_) {
      const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        return;  // shut down
      }
      ++connections_;
      const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr = loopback(target_port_);
      if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      std::lock_guard lock(mutex_);
      open_fds_.insert(open_fds_.end(), {client, server});
      pumps_.emplace_back([this, client, server] { pump(client, server); });
    }
  }

  // Forwards both ways until either side closes, applying the one-shot faults.
  void pump(int client, int server) {
    std::uint64_t down = 0;
    bool frozen = false;
    char buf[16384];
    pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    while (true) {
      // The timeout only lets a pump notice that the relay shuts down.
      if (::poll(fds, 2, 200) < 0 || stopping_) {
        if (stopping_ || errno != EINTR) {
          break;
        }
        continue;
      }
      bool closed = false;
      for (int i = 0; i < 2 && !closed; ++i) {
        if (fds[i].revents == 0) {
          continue;
        }
        const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n <= 0) {
          closed = true;
          break;
        }
        if (i == 1) {
          down += static_cast<std::uint64_t>(n);
          if (const auto limit = cut_after_.load(); limit != 0 && down > limit) {
            cut_after_ = 0;
            ++cuts_;
            closed = true;
            break;
          }
          if (const auto limit = freeze_after_.load(); limit != 0 && down > limit) {
            freeze_after_ = 0;
            std::lock_guard lock(mutex_);
            frozen_ = true;
            frozen_cv_.notify_all();
            frozen = true;
            break;
          }
        }
        const int to = i == 0 ? server : client;
        for (ssize_t off = 0; off < n;) {
          const ssize_t w = ::write(to, buf + off, static_cast<std::size_t>(n - off));
          if (w <= 0) {
            closed = true;
            break;
          }
          off += w;
        }
      }
      if (frozen) {
        // Hold the connection open, forwarding nothing, until the relay shuts down.
        while (!stopping_) {
          pollfd none{-1, 0, 0};
          ::poll(&none, 1, 100);
        }
        break;
      }
      if (closed) {
        break;
      }
    }
    ::shutdown(client, SHUT_RDWR);
    ::shutdown(server, SHUT_RDWR);
    std::lock_guard lock(mutex_);
    std::erase(open_fds_, client);
    std::erase(open_fds_, server);
    ::close(client);
    ::close(server);
  }

  std::uint16_t target_port_;
  std::uint16_t port_ = 0;
  int listener_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> cut_after_{0};
  std::atomic<std::uint64_t> freeze_after_{0};
  std::atomic<int> connections_{0};
  std::atomic<int> cuts_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::condition_variable frozen_cv_;
  bool frozen_ = false;
  std::vector<int> open_fds_;
  std::vector<std::thread> pumps_;
};

}  // namespace fwdepot::testing
