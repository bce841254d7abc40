// SPDX-License-Identifier: MIT
#pragma once
// Pieces of the Linux local-pipe client that the blocking connect
// (client_posix.cpp), the async connect (runtime/) and the gateway share, so
// all say the same things and map the same errors. The npipe handshake
// itself is in client_handshake.hpp.

#include "transport/transport.hpp"

#include <memory>
#include <string>
#include <system_error>

namespace npipe::detail {

/// "pid P, uid U (user)".
std::string describe(const peer_identity& p);
/// Where a client connects for a pipe (client_dir_posix.cpp).
struct socket_target {
  std::string path;    ///< the socket file's path: what messages name
  std::string address; ///< what connect(2) is given: the same file, reached through
                       ///< the descriptor of the directory that was checked
  std::shared_ptr<const void> dir; ///< that directory, held open while `address` is used
};
/// The socket for `name` in the client's pipe directory, once the directory
/// passed check_client_directory (remembered per process, see the .cpp);
/// false (with detail) when the path is too long or the directory unsafe.
bool client_target(const pipe_name& name, const client_options& opts, socket_target& t, std::error_code& ec);
/// The error (and detail) for a failed connect(2) to `path`.
std::error_code connect_error(int err, const std::string& path);
/// Applies client_options::require_server_uid.
bool check_server(const pipe_name& name, const client_options& opts, const peer_identity& server,
                  std::error_code& ec);

} // namespace npipe::detail
