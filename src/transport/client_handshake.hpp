// SPDX-License-Identifier: MIT
#pragma once
// The client's side of npipe's handshake (docs/protocol.md), for every
// client that frames: the hello, what the server's reply means, and the
// whole exchange over a blocking byte stream. Local and remote, blocking and
// async clients all use it, so all say the same things.

#include "core/protocol.hpp"
#include "transport/byte_stream.hpp"
#include "transport/transport.hpp"

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>

namespace npipe::detail {

/// How long past the caller's deadline a client waits for the server to say
/// "busy" (the server ends the wait it was asked for, then answers).
inline constexpr auto handshake_slack = std::chrono::seconds(2);

/// The hello (plus `first` as a pipelined data frame); `wait_ms` is what it asks for.
std::string client_hello(const pipe_name& name, const client_options& opts, deadline dl,
                         std::span<const std::byte> first, std::uint32_t& wait_ms);
/// Interprets the server's reply: on ok fills `p` (extra = bytes after the
/// reply), else sets ec and a detail that says why. `overloaded`, if given,
/// says whether the server let this connection go in its handshake
/// (protocol::status::overloaded) while the client was willing to wait: it
/// may then connect again within its deadline.
bool client_accepts(const pipe_name& name, const client_options& opts, const protocol::reply& rep,
                    std::uint32_t wait_ms, peer_identity server, const std::string& where,
                    std::span<const std::byte> extra, connection_params& p, std::error_code& ec,
                    bool* overloaded = nullptr);
/// The whole client handshake over a connected stream (hello out, reply in,
/// client_accepts); `where` names the endpoint in messages (a socket path,
/// or HOST:PORT for a remote pipe).
bool client_handshake(byte_stream& stream, const pipe_name& name, const client_options& opts, deadline dl,
                      std::span<const std::byte> first, peer_identity server, const std::string& where,
                      connection_params& p, std::error_code& ec, bool* overloaded = nullptr);

} // namespace npipe::detail
