// SPDX-License-Identifier: MIT
#pragma once
// The Linux pipe directory: whether a directory may hold a server's socket
// files, and how a server takes a name in it (reclaiming a crashed server's
// socket file). Used by local_posix.cpp; see README, "Names on Linux".

#include "transport/transport.hpp"

#include <npipe/pipe_name.hpp>

#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <system_error>

namespace npipe::detail {

/// A sockaddr_un for `path`; false if it does not fit in sun_path.
bool make_sockaddr(const std::string& path, sockaddr_un& sa, socklen_t& len);

/// Server side: checks (and, when missing, creates) the pipe directory.
/// `shared_default`: it is the machine-wide default, created mode 1777.
bool check_directory(const std::string& dir, bool shared_default, std::error_code& ec);

enum class probe_result { live, stale, gone, unknown };

/// Is a server listening behind `path`? A connection attempt tells, without
/// sending anything; the live owner's credentials come with it.
probe_result probe(const std::string& path, peer_identity& owner);

/// Gives the listening socket bound at `slot` (in a private directory inside
/// `dir`) the name `path` of pipe `name`, reclaiming a stale socket file left
/// there by a crashed server. On success `dev`/`ino` identify the file that is
/// now ours. name_in_use (with a detail naming the owner) when a live server
/// or a file that is not a stale socket of ours has the name.
bool take_name(const std::string& dir, const std::string& slot, const std::string& path, const pipe_name& name,
               dev_t& dev, ino_t& ino, std::error_code& ec);

} // namespace npipe::detail
