// SPDX-License-Identifier: MIT
#pragma once
// One remote client's session at the gateway: its TLS handshake (or
// plaintext hello), the hello naming its pipe, the checks, the connect to
// the local pipe and the hand-over to a relay (gateway_session.cpp).

#include "core/protocol.hpp"
#include "remote/gateway_admission.hpp"
#include "remote/relay.hpp"
#include "transport/local_posix.hpp"
#include "transport/transport.hpp"

#include <npipe/remote.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(any_io_executor.hpp)
#include NPIPE_NET_HEADER(steady_timer.hpp)

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace npipe::detail {

// One remote client, from TCP accept to the hand-over to its relay. Runs on
// the session's strand (the executor of its sockets and timer). Ends in
// exactly one of the gateway's counts: dropped, tls_failed, refused, relayed.
class gateway_session : public std::enable_shared_from_this<gateway_session> {
public:
  gateway_session(std::shared_ptr<gateway_shared> g, tcp_socket s, std::string address);
  ~gateway_session();

  net::any_io_executor executor() { return timer_.get_executor(); }

  void start(std::uint64_t seq);

  /// Let go to make room for a newer unauthenticated connection (on the strand).
  void drop(const std::string& why);

private:
  enum class outcome { none, dropped, tls_failed, refused, relayed };

  int rfd() { return link_->socket.native_handle(); }
  void count(outcome o, gateway_event::kind k, std::string why);
  void tls_failed(std::string why) { count(outcome::tls_failed, gateway_event::kind::tls_failed, std::move(why)); }
  void refused(std::string why) { count(outcome::refused, gateway_event::kind::refused, std::move(why)); }
  void fail(std::string why);

  template <class F>
  void arm(timeout t, F on_expiry) {
    if (t < timeout::zero()) return;
    timer_.expires_after(t);
    timer_.async_wait([self = shared_from_this(), on_expiry](const net_error_code& ec) {
      if (!ec && !self->closed_) on_expiry();
    });
  }
  void wait_remote(tls::io want, void (gateway_session::*then)());

  void on_first_byte();
  void handshake();
  bool authenticate();
  void read_hello();
  void on_hello(protocol::hello h, std::size_t used);
  void on_local_connect(std::error_code ec);
  void relay_now();

  void refuse(protocol::status s, std::string why);
  void answer(protocol::status s);
  void send_reply();
  void linger();
  void drain();

  void close();

  std::shared_ptr<gateway_shared> g_;
  net::steady_timer timer_;
  unix_socket local_;
  socket_target target_; // where local_ connects
  std::string address_, who_, pipe_;
  std::unique_ptr<remote_link> link_;
  std::vector<std::byte> hello_, reply_;
  std::size_t reply_off_ = 0;
  std::string out_;
  clock::time_point started_;
  std::uint64_t seq_ = 0;
  outcome outcome_ = outcome::none;
  bool tls_done_ = false, closed_ = false;
  bool talking_ = false, lingers_ = false;
  bool authenticated_ = false; // through TLS (plaintext: through its hello), or refused after it
  bool graduated_ = false;     // counted in gateway_shared::authenticated
};

} // namespace npipe::detail
