// SPDX-License-Identifier: MIT
#pragma once
// The listening socket of a Linux local-pipe server: created with its mode
// already set, then given the pipe's name (listener_posix.cpp).

#include "transport/transport.hpp"

#include <npipe/pipe_name.hpp>

#include <string>
#include <sys/types.h>
#include <system_error>

namespace npipe::detail {

/// A listening socket and the file that names it (close removes only that file).
struct listener {
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
};

/// Binds and listens on a socket for `name` with the mode `o.access` asks
/// for, and gives it the name `path` in `dir`; `out` then holds it.
bool create_listener(const std::string& dir, const std::string& path, const pipe_name& name, const server_options& o,
                     listener& out, std::error_code& ec);

} // namespace npipe::detail
