// SPDX-License-Identifier: MIT
#pragma once
// The gateway's relay: copies bytes between a remote client's link
// (remote_link.hpp) and the local pipe's stream socket.

#include "core/protocol.hpp"
#include "remote/remote_link.hpp"
#include "transport/transport.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(local/stream_protocol.hpp)
#include NPIPE_NET_HEADER(steady_timer.hpp)

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace npipe::detail {

using unix_socket = net::local::stream_protocol::socket;

/// Copies bytes both ways between `link` and `local` until either side ends,
/// an error, or `idle` passes with no byte in either direction (counted once
/// the local side has sent something: before that, a gateway's client may be
/// waiting for a busy pipe, which only the server ends). Holds no
/// buffer while idle: it waits for readiness, reads into a per-thread
/// scratch buffer and keeps only what the other side cannot take yet.
/// Everything runs on the executor of `local` (a strand).
class relay : public std::enable_shared_from_this<relay> {
public:
  /// What the two ends are called in the reasons a relay ends with.
  struct sides {
    std::string remote; ///< e.g. "the client"
    std::string local;  ///< e.g. "the server"
  };
  relay(std::unique_ptr<remote_link> link, unix_socket local, timeout idle, sides names);
  /// Start copying; `on_end` runs once, on the strand, when the relay
  /// stops, with why ("<remote> closed", "<local> closed", the idle timeout,
  /// a TLS error). `on_reply`, if set, runs once with the status of the
  /// handshake reply the local side sends first (a gateway relaying to a
  /// server: whether the server accepted the client).
  void start(std::function<void(const std::string& why)> on_end = {},
             std::function<void(protocol::status)> on_reply = {});
  /// Stop now (on the strand).
  void close(std::string why = "closed");

private:
  void pump_up();
  void wait_local();
  void pump_down();
  void flush_down();
  void wait_link(tls::io want, void (relay::*then)()); // then `then`, unless closed meanwhile
  void idle_check(timeout t);
  std::string remote_end() const; // why the remote side ended: its error, or that it closed

  std::unique_ptr<remote_link> link_;
  unix_socket local_sock_;
  net::steady_timer timer_;
  timeout idle_;
  std::string remote_, local_; // the sides' names
  std::function<void(const std::string&)> on_end_;
  std::function<void(protocol::status)> on_reply_;
  std::array<std::byte, protocol::reply_size> reply_{}; // the first bytes down, while on_reply_ waits
  std::size_t reply_got_ = 0;
  void watch_reply(const std::byte* p, std::size_t n);
  std::vector<std::byte> up_pending_, down_pending_;
  std::size_t down_off_ = 0;
  std::chrono::steady_clock::time_point last_;
  bool closed_ = false;
  bool local_spoke_ = false; // the idle timeout counts from the local side's first bytes
};

} // namespace npipe::detail
