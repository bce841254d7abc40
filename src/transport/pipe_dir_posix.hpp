// SPDX-License-Identifier: MIT
#pragma once
// The Linux pipe directory: whether a directory may hold a server's socket
// files (pipe_dir_posix.cpp), and how a server takes a name in it, reclaiming
// a crashed server's socket file (reclaim_posix.cpp). Used by the Linux
// server and client; see README, "Names on Linux".

#include "transport/transport.hpp"

#include <npipe/pipe_name.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <system_error>

namespace npipe::detail {

/// A sockaddr_un for `path`; false if it does not fit in sun_path.
bool make_sockaddr(const std::string& path, sockaddr_un& sa, socklen_t& len);

/// Server side: checks every component of the pipe directory's path from /
/// down (creating the last one when it is missing: mode 1777 when
/// `shared_default`, the machine-wide default, else 0755). Each must be owned
/// by root or by this user, and writable by no one else unless sticky; a
/// symbolic link on the way is followed only when root or this user owns it,
/// and the directory itself must not be one. errc::unsafe_directory (detail:
/// the component, what is wrong, what to do) otherwise.
bool check_server_directory(const std::string& dir, bool shared_default, std::error_code& ec);

/// Client side, before trusting a socket in `dir`: the same rules, where the
/// owners a client accepts are root, itself, and `require_server_uid` if set,
/// else the owner of the pipe directory itself (see the .cpp for why).
/// A missing directory is "no server is listening at `socket`" (not_found).
/// When it passes and `held` is given, *held is an O_PATH descriptor of the
/// directory that was checked (the caller's to close) and *held_st its stat.
bool check_client_directory(const std::string& dir, const std::string& socket,
                            std::optional<std::uint32_t> require_server_uid, std::error_code& ec,
                            int* held = nullptr, struct stat* held_st = nullptr);

/// `dir` made absolute (cwd/DIR, from getcwd, when relative), as the checks
/// walk it; unsafe_directory when the current directory is unknown.
bool absolute_dir(const std::string& dir, std::string& out, std::error_code& ec);

enum class probe_result { live, stale, gone, unknown };

/// Is a server listening behind `path`? A connection attempt tells, without
/// sending anything; the live owner's credentials come with it.
probe_result probe(const std::string& path, peer_identity& owner);

/// Gives the listening socket bound at `slot` (in a private directory inside
/// the pipe directory) the name `path` of pipe `name`, reclaiming a stale
/// socket file a crashed server left there; no lock is taken (see the .cpp).
/// On success `dev`/`ino` identify the file that is now ours. name_in_use
/// (with a detail naming the owner) when a live server, or a file that is
/// not a stale socket of ours, has the name.
bool take_name(const std::string& slot, const std::string& path, const pipe_name& name, dev_t& dev, ino_t& ino,
               std::error_code& ec);

/// take_name's reclaim step, for tests: swaps the socket at `slot` (whose
/// file is `mine`) with whatever `path` holds now, keeps the name if that was
/// a dead socket (deleting it), else gives it back and holds `mine` again.
enum class reclaim_result { taken, given_back, gone, failed };
reclaim_result reclaim(const std::string& slot, const std::string& path, const struct stat& mine, std::error_code& ec);

} // namespace npipe::detail
