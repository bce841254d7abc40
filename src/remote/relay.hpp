// SPDX-License-Identifier: MIT
#pragma once
// Asio pieces remote pipes share: a remote connection (a TCP socket and its
// session, TLS or plaintext) that Asio waits on, and the relay that copies
// bytes between one and a local stream socket. The gateway relays remote
// clients to local pipes with it; the async client relays its Unix-socket
// end of a socketpair to a remote gateway.

#include "core/protocol.hpp"
#include "remote/tls_session.hpp"
#include "transport/transport.hpp"

#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace npipe::detail {

using tcp_socket = asio::ip::tcp::socket;
using unix_socket = asio::local::stream_protocol::socket;

/// A remote connection: a TCP socket (made non-blocking) and the session on
/// it (plaintext until its owner starts TLS). The session's calls never
/// block; wait() waits on the socket for the readiness one of them asked
/// for. Used on one strand.
struct remote_link {
  /// `peer` names the other end in the session's error details.
  remote_link(tcp_socket s, std::string peer) noexcept;
  /// Call `h(error_code)` once the socket is ready for `want` (want_read or want_write).
  template <class Handler>
  void wait(tls::io want, Handler&& h) {
    socket.async_wait(want == tls::io::want_write ? tcp_socket::wait_write : tcp_socket::wait_read,
                      std::forward<Handler>(h));
  }
  /// session.write() until all of p[off, len) is out (`off` advances), it
  /// wants a wait, or it ends.
  tls::io write_from(const std::byte* p, std::size_t len, std::size_t& off);
  /// close_notify if the TLS session is up and the socket takes it now, then close.
  void close(bool tls_up) noexcept;

  tcp_socket socket;
  tls::session session;
};

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
  /// Why the remote side ended, if with an error (any thread).
  std::pair<std::error_code, std::string> end_reason() const;

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
  asio::steady_timer timer_;
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
  mutable std::mutex end_mu_;
  std::error_code end_ec_;
  std::string end_detail_;
};

} // namespace npipe::detail
