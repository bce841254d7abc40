// SPDX-License-Identifier: MIT
#pragma once
// A raw Unix-socket peer that speaks npipe's wire protocol by hand, for tests
// that must misbehave in ways the library never would.

#include <npipe/npipe.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace npipe::test {

/// Connect a plain Unix stream socket (10 s receive timeout); -1 on failure.
int raw_connect(const std::string& path);
/// The same over TCP to an IPv4 address.
int raw_tcp_connect(const std::string& ipv4, std::uint16_t port);
/// The client's hello for `name`, with a chosen protocol version.
std::string raw_hello(const pipe_name& name, char version = 1);
/// A data frame carrying `payload`.
std::string raw_frame(std::string_view payload);
/// Connect and complete the handshake with server `s`; the fd, or -1.
int raw_session(const server& s);
/// The same with a prepared path and hello; allocates nothing.
int raw_session(const std::string& path, const std::string& hello);
/// Wait (up to the socket's receive timeout) until the server closes `fd`:
/// end of stream, or ECONNRESET when it closed with our bytes unread.
bool closed_by_server(int fd);

} // namespace npipe::test
