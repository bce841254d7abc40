// SPDX-License-Identifier: MIT
#pragma once
// Asio pieces remote pipes share: an asynchronous TLS handshake on a
// non-blocking TCP socket, and the relay that copies bytes between a remote
// TCP connection (TLS or plaintext) and a local stream socket. The gateway
// relays remote clients to local pipes with it; the async client relays its
// Unix-socket end of a socketpair to a remote gateway.

#include "core/protocol.hpp"
#include "remote/tls.hpp"
#include "transport/transport.hpp"

#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/steady_timer.hpp>

#include <openssl/ssl.h>

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

/// Result of a non-blocking operation on a remote connection.
enum class remote_io { done, want_read, want_write, end };

/// A remote connection: a non-blocking TCP socket, with TLS when `ssl` is
/// set (owned). Reads and writes never block; wait() waits for what the last
/// one asked for.
class remote_link {
public:
  remote_link(tcp_socket s, SSL* ssl) noexcept;
  ~remote_link();
  remote_link(const remote_link&) = delete;
  remote_link& operator=(const remote_link&) = delete;

  tcp_socket& socket() noexcept { return s_; }
  SSL* ssl() const noexcept { return ssl_; }
  remote_io read(std::byte* p, std::size_t cap, std::size_t& n);
  remote_io write(const std::byte* p, std::size_t len, std::size_t& n);
  /// One step of the TLS handshake (client or server, as the session was set up).
  remote_io handshake_step();
  template <class Handler>
  void wait(remote_io want, Handler&& h) {
    s_.async_wait(want == remote_io::want_write ? tcp_socket::wait_write : tcp_socket::wait_read,
                  std::forward<Handler>(h));
  }
  /// close_notify if the TLS session is up and the socket takes it now, then close.
  void close(bool tls_up) noexcept;
  /// Why the last read or write said `end`: an error with its detail, or
  /// nothing for a clean end of the stream.
  const std::error_code& end_error() const noexcept { return end_ec_; }
  const std::string& end_detail() const noexcept { return end_detail_; }
  /// Who the other end is, for those details.
  void set_peer(std::string peer) { peer_ = std::move(peer); }

private:
  remote_io tls_result(int ret);
  remote_io ended(int ret);
  tcp_socket s_;
  SSL* ssl_;
  std::string peer_ = "the peer";
  std::error_code end_ec_;
  std::string end_detail_;
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
  relay(std::unique_ptr<remote_link> link, unix_socket local, timeout idle, bool tls_up, sides names);
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
  void idle_check(timeout t);
  std::string remote_end() const; // why the remote side ended: its error, or that it closed

  std::unique_ptr<remote_link> link_;
  unix_socket local_sock_;
  asio::steady_timer timer_;
  timeout idle_;
  bool tls_up_;
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
