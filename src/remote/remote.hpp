// SPDX-License-Identifier: MIT
#pragma once
// Remote pipes inside the library: the blocking client's entry point and the
// TCP details the client and the gateway share.

#include "transport/transport.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace npipe::detail {

/// Connect to `\\HOST[:PORT]\pipe\NAME` through HOST's gateway.
std::unique_ptr<connection_impl> connect_remote(const pipe_name& name, const client_options& opts, deadline dl,
                                                std::error_code& ec, std::span<const std::byte> first = {});

/// "host:port", or "[v6]:port".
std::string endpoint_text(const std::string& host, std::uint16_t port);

/// TCP_NODELAY and keepalive probes (a vanished host is noticed in about a
/// minute). On a listening socket: Linux gives them to every socket it
/// accepts (the gateway sets them once, not five system calls per client;
/// Remote.TcpOptionsOfAListeningSocketReachTheSocketsItAccepts checks it).
void tune_tcp(int fd) noexcept;

} // namespace npipe::detail
