// SPDX-License-Identifier: MIT
#pragma once
// Who may connect to a Linux local pipe (server_options::access): the mode
// of its socket file and the credential check at hello (access_posix.cpp).

#include "transport/transport.hpp"

#include <sys/types.h>

namespace npipe::detail {

/// The socket file's mode for `a` (the credential check narrows a list).
mode_t socket_mode(const access_policy& a);
/// May `p` connect? Root and this server's user always may.
bool allowed(const access_policy& a, const peer_identity& p);

} // namespace npipe::detail
