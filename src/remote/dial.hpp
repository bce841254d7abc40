// SPDX-License-Identifier: MIT
#pragma once
// Reaching HOST's gateway for a remote pipe: resolving, TCP within the
// deadline, the TLS context and handshake, the gateway's identity: the plan,
// the blocking front for the blocking client (poll()), and the async front
// for the async client (Asio), with the same rules and words.

#include "remote/tls.hpp"
#include "remote/tls_session.hpp"
#include "transport/byte_stream.hpp"
#include "transport/transport.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(any_io_executor.hpp)
#include NPIPE_NET_HEADER(ip/tcp.hpp)

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <system_error>

namespace npipe::detail {

/// What dialing `\\HOST[:PORT]\pipe\NAME` needs, from its name and options.
struct dial_plan {
  std::string host;
  std::uint16_t port = 0;
  std::string where;                 // "host:port", in messages
  std::shared_ptr<tls::context> tls; // null: plaintext (insecure)
  deadline net;                      // setting up the link (and retrying) ends by then
  bool may_wait = false;             // the caller waits for an instance: a full gateway is tried again

  /// Whether to try again, after `pause`, a gateway that was full.
  bool may_retry(std::chrono::milliseconds pause) const { return may_wait && clock::now() + pause < net.at; }
};

/// The plan for `name`, or false with ec and detail (bad TLS options). The
/// caller's `dl` is its wait for an instance; setting up the link gets at
/// least handshake_slack on top, and a bound when the caller waits forever.
bool plan_dial(const pipe_name& name, const client_options& opts, deadline dl, dial_plan& plan, std::error_code& ec);

/// The blocking front: a connected stream to the gateway, TLS done (or
/// plaintext), and the gateway's identity in `server`; or null with ec and
/// detail, `overloaded` set if the gateway let the connection go to make room.
std::unique_ptr<byte_stream> dial_gateway(const dial_plan& plan, peer_identity& server, bool& overloaded,
                                          std::error_code& ec);

/// The async front: resolve, TCP, the TLS handshake, each a wait on its
/// executor (a strand); `done` runs there once, unless cancel() came first.
/// The deadline (plan.net) is the caller's timer, which cancels.
class gateway_dialer : public std::enable_shared_from_this<gateway_dialer> {
public:
  struct result {
    std::error_code ec; // else: fd, session, server
    std::string detail;
    bool overloaded = false;               // the gateway let the connection go to make room
    int fd = -1;                           // a connected, non-blocking TCP socket, the caller's to close
    std::unique_ptr<tls::session> session; // TLS done on fd; null for plaintext
    peer_identity server;
  };
  gateway_dialer(const net::any_io_executor& ex, const dial_plan& plan) : plan_(plan), resolver_(ex), tcp_(ex) {}
  void start(std::function<void(result)> done);
  void cancel() noexcept;

private:
  void on_connect(const std::error_code& ec);
  void step();
  void fail(std::error_code ec, std::string detail, bool overloaded = false);

  dial_plan plan_;
  net::ip::tcp::resolver resolver_;
  net::ip::tcp::socket tcp_;
  std::unique_ptr<tls::session> session_;
  std::function<void(result)> done_;
};

} // namespace npipe::detail
