// SPDX-License-Identifier: MIT
#pragma once
// Reaching HOST's gateway for a remote pipe: resolving, TCP within the
// deadline, the TLS context and handshake, the gateway's identity: the plan,
// and the blocking front for the blocking client (poll()).

#include "remote/tls.hpp"
#include "transport/byte_stream.hpp"
#include "transport/transport.hpp"

#include <chrono>
#include <cstdint>
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

} // namespace npipe::detail
