// SPDX-License-Identifier: MIT
#pragma once
// The gateway's side of a remote connection: a TCP socket (made
// non-blocking) and the session on it (plaintext until its owner starts
// TLS), which the gateway's session and its relay drive with Asio waits.

#include "remote/tls_session.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(ip/tcp.hpp)

#include <string>
#include <utility>

namespace npipe::detail {

using tcp_socket = net::ip::tcp::socket;

/// The session's calls never block; wait() waits on the socket for the
/// readiness one of them asked for. Used on one strand.
struct remote_link {
  /// `peer` names the other end in the session's error details.
  remote_link(tcp_socket s, std::string peer) noexcept
      : socket(std::move(s)), session(socket.native_handle(), std::move(peer)) {
    std::error_code ignore;
    socket.non_blocking(true, into(ignore));
  }
  /// Call `h(error_code)` once the socket is ready for `want` (want_read or want_write).
  template <class Handler>
  void wait(tls::io want, Handler&& h) {
    socket.async_wait(want == tls::io::want_write ? tcp_socket::wait_write : tcp_socket::wait_read,
                      std_errors(std::forward<Handler>(h)));
  }
  /// session.write() until all of p[off, len) is out (`off` advances), it
  /// wants a wait, or it ends.
  tls::io write_from(const std::byte* p, std::size_t len, std::size_t& off) {
    while (off < len) {
      std::size_t k = 0;
      tls::io r = session.write(p + off, len - off, k);
      if (r != tls::io::done) return r;
      off += k;
    }
    return tls::io::done;
  }
  /// close_notify if the TLS session is up and the socket takes it now, then close.
  void close(bool tls_up) noexcept {
    if (tls_up) session.shutdown();
    std::error_code ignore;
    socket.close(into(ignore));
  }

  tcp_socket socket;
  tls::session session;
};

} // namespace npipe::detail
