// SPDX-License-Identifier: MIT
#pragma once
// Pieces of the Linux local-pipe client that the blocking connect
// (client_posix.cpp), the async connect (runtime/) and the gateway share, so
// all say the same things and map the same errors. The npipe handshake
// itself is in client_handshake.hpp.

#include "transport/transport.hpp"

#include <string>
#include <system_error>

namespace npipe::detail {

/// "pid P, uid U (user)".
std::string describe(const peer_identity& p);
/// The socket file for `name`; false (with detail) when the path is too long.
bool client_path(const pipe_name& name, const client_options& opts, std::string& path, std::error_code& ec);
/// The error (and detail) for a failed connect(2) to `path`.
std::error_code connect_error(int err, const std::string& path);
/// Applies client_options::require_server_uid.
bool check_server(const pipe_name& name, const client_options& opts, const peer_identity& server,
                  std::error_code& ec);

} // namespace npipe::detail
