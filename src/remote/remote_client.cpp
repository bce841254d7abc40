// SPDX-License-Identifier: MIT
// The blocking client for remote pipes: dial HOST's gateway (dial.hpp: TCP,
// TLS 1.3 or plaintext when asked), then npipe's handshake and framing as on
// a local pipe; a gateway that was full is dialled again while the caller waits.

#include "remote/dial.hpp"
#include "remote/remote.hpp"
#include "transport/client_handshake.hpp"
#include "transport/framed_connection.hpp"

#include <thread>
#include <utility>

namespace npipe::detail {

std::unique_ptr<connection_impl> connect_remote(const pipe_name& name, const client_options& opts, deadline dl,
                                                std::error_code& ec, std::span<const std::byte> first) {
  dial_plan plan;
  if (!plan_dial(name, opts, dl, plan, ec)) return nullptr;
  // A gateway flooded with connections still authenticating lets some go
  // and says so (status overloaded), as does a full one: a client that may
  // wait tries again.
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    peer_identity server;
    bool overloaded = false;
    auto stream = dial_gateway(plan, server, overloaded, ec);
    if (stream) {
      connection_params p;
      if (client_handshake(*stream, name, opts, dl, first, std::move(server), plan.where, p, ec, &overloaded))
        return std::make_unique<framed_connection>(std::move(stream), std::move(p));
    }
    if (!overloaded || !plan.may_retry(pause)) return nullptr;
    stream.reset();
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(16));
    ec.clear();
  }
}

} // namespace npipe::detail
