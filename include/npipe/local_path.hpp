// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// Where local pipes live on Linux (socket files), for tools and diagnostics.

#include <npipe/export.h>
#include <npipe/pipe_name.hpp>

#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace npipe {

/// The machine-wide default pipe directory on Linux, shared like /tmp
/// (mode 1777, created on first use).
inline constexpr const char* default_pipe_directory = "/tmp/.npipe";

/// The pipe directory in effect: `override_dir` if not empty, else
/// $NPIPE_DIR if set, else default_pipe_directory.
NPIPE_API std::string pipe_directory(std::string_view override_dir = {});

/// The socket file a local pipe name maps to (see README, "Names on Linux").
/// On Windows: the `\\.\pipe\NAME` path.
NPIPE_API std::string local_path(const pipe_name& name, std::error_code& ec, std::string_view override_dir = {});

/// What list_local_pipes() found behind a socket file.
enum class local_pipe_state : unsigned char {
  live,                ///< a server listens and accepted a probe connection from this user
  live_not_accessible, ///< a server listens, but the file's permissions refuse this user (a probe gets EACCES)
  stale,               ///< nobody listens: left by a server that ended without removing it
  unknown,             ///< the probe failed for another reason, or liveness cannot be seen from here
};

/// One entry of list_local_pipes().
struct local_pipe_info {
  std::string file;      ///< file name in the pipe directory (the folded NAME, or "#hash" for hashed names)
  std::string path;      ///< full socket path
  long owner_uid = -1;   ///< owner of the socket file
  /// A server listens (state is live or live_not_accessible). Kept for
  /// callers that only ask whether a name is taken.
  bool live = false;
  local_pipe_state state = local_pipe_state::unknown;
};

/// The pipes in a pipe directory (Linux: each socket is probed with a
/// connection attempt that sends nothing; a socket this user may not connect
/// to is looked up among the machine's listening Unix sockets, so that a live
/// pipe of another user is not taken for a stale one). A missing directory is
/// an empty list. On Windows: every named pipe on the machine
/// (`\\.\pipe\*`), npipe's or not, all live.
NPIPE_API std::vector<local_pipe_info> list_local_pipes(std::error_code& ec, std::string_view override_dir = {});

} // namespace npipe
