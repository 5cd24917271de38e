// SPDX-License-Identifier: Apache-2.0
// The HTTPS listeners' accept loops and per-connection sessions (Beast, C++20 coroutines).
#pragma once

#include "fwdepot/server/server.hpp"
#include "https/listener.hpp"
#include "https/tls.hpp"
#include "service/admin_service.hpp"
#include "service/checkin_writer.hpp"
#include "service/ddi_service.hpp"
#include "service/device_service.hpp"
#include "service/metrics.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <functional>
#include <mutex>

namespace fwdepot::server {

/// A live session's entry in the server's registry (https/session.cpp).
struct SessionHandle;

/// Everything a session needs; owned by the server, outliving every session.
struct ServerContext {
  ServerContext(const ServerOptions& o, ServerTls& t, Backend& b, DeviceService& ds,
                AdminService& as, Metrics& m)
      : options(o), tls(t), backend(b), devices(ds), admin(as), metrics(m) {}

  const ServerOptions& options;
  ServerTls& tls;
  Backend& backend;
  DeviceService& devices;
  AdminService& admin;
  Metrics& metrics;
  std::atomic<bool> draining{false};
  std::atomic<std::size_t> device_connections{0};
  std::atomic<std::size_t> admin_connections{0};
  std::atomic<std::size_t> sessions{0};  // both listeners
  std::uint16_t coaps_port = 0;          // set before serving; 0: no CoAPS URLs in offers
  DdiService* ddi = nullptr;             // set before serving; nullptr: DDI not served
  CheckinWriter* checkins = nullptr;     // set before serving; nullptr: written in the request
  bool one_thread = false;               // set before serving: one thread runs the io_context
  std::function<void()> on_drained;      // called when draining and the last session ends

  /// Sessions register while they live, so that shutdown can end the idle ones at once.
  void register_session(SessionHandle& h);
  void unregister_session(SessionHandle& h);
  /// After `draining` is set: asks every session waiting for a next request to stop waiting.
  void wake_idle_sessions();

  /// A connection parked between requests joins the parked list (from its executor) and leaves
  /// it when it wakes. One periodic sweep (the server's) ends the ones parked longer than the
  /// idle timeout: a parked connection holds no timer of its own, whose armed operation would
  /// weigh about 220 bytes on each.
  void park(SessionHandle& h);
  void unpark(SessionHandle& h);
  /// Asks every session parked for the idle timeout or longer to stop waiting.
  void end_overdue_parks();

 private:
  void unlink_parked(SessionHandle& h);  // under the mutex

  std::mutex registry_mutex_;
  SessionHandle* registry_ = nullptr;       // the newest session's; linked through the handles
  SessionHandle* parked_oldest_ = nullptr;  // the parked list, linked through the handles
  SessionHandle* parked_newest_ = nullptr;
};

/// Accepts until the acceptor is closed, spawning one session per connection on its own strand
/// (with one serving thread, on the io_context's executor: nothing runs at once there).
boost::asio::awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor& acceptor,
                                         Listener listener, ServerContext& ctx);

}  // namespace fwdepot::server
