// SPDX-License-Identifier: MIT
// Linux local pipes, the client side: finding and checking the socket,
// connect(2) with retries (the handshake is client_handshake.cpp), and the
// pieces the blocking and async clients and the gateway share (local_posix.hpp).

#include "core/framing.hpp"
#include "core/name_map.hpp"
#include "core/protocol.hpp"
#include "transport/client_handshake.hpp"
#include "transport/framed_connection.hpp"
#include "transport/local_posix.hpp"
#include "transport/pipe_dir_posix.hpp"
#include "transport/posix_util.hpp"
#include "transport/transport.hpp"

#include <npipe/local_path.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

namespace npipe::detail {

std::string describe(const peer_identity& p) {
  std::string s = "pid " + std::to_string(p.pid) + ", uid " + std::to_string(p.uid);
  if (!p.user.empty()) s += " (" + p.user + ")";
  return s;
}

std::error_code connect_error(int e, const std::string& path) {
  if (e == ENOENT || e == ECONNREFUSED) set_error_detail("no server is listening at " + path);
  else if (e == EACCES || e == EPERM) set_error_detail("permission denied on " + path + " (the server's access policy)");
  return e == EAGAIN ? make_error_code(errc::pipe_busy, e) : errno_error(e);
}

bool check_server(const pipe_name& name, const client_options& opts, const peer_identity& server,
                  std::error_code& ec) {
  if (opts.require_server_uid && server.uid != static_cast<std::int64_t>(*opts.require_server_uid)) {
    set_error_detail("the server of " + name.str() + " runs as uid " + std::to_string(server.uid) + ", not uid " +
                     std::to_string(*opts.require_server_uid) + "; refusing it (possible squatter)");
    ec = make_error_code(errc::access_denied);
    return false;
  }
  return true;
}

std::unique_ptr<connection_impl> connect_local(const pipe_name& name, const client_options& opts, deadline dl,
                                               std::error_code& ec, std::span<const std::byte> first) {
  socket_target target;
  if (!client_target(name, opts, target, ec)) return nullptr;
  sockaddr_un sa;
  socklen_t len = 0;
  make_sockaddr(target.address, sa, len);
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ec = errno_error(errno);
      return nullptr;
    }
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0) {
      int e = errno;
      ::close(fd);
      if (e == EAGAIN && !dl.passed()) {
        // The server's accept backlog is full: rare, and brief. Retry until the deadline.
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (!dl.passed()) continue;
      }
      ec = connect_error(e, target.path);
      return nullptr;
    }
    // Connected without waiting (a full backlog said EAGAIN instead); from
    // here on blocking, as on the server side, with MSG_DONTWAIT where needed.
    ::fcntl(fd, F_SETFL, 0); // a new socket has no other status flag set
    auto stream = std::make_unique<fd_stream>(fd);
    peer_identity server = peer_of(fd);
    if (!check_server(name, opts, server, ec)) return nullptr;
    connection_params p;
    bool overloaded = false;
    if (client_handshake(*stream, name, opts, dl, first, std::move(server), target.path, p, ec, &overloaded))
      return std::make_unique<framed_connection>(std::move(stream), std::move(p));
    // Let go in its handshake by a server flooded with unfinished ones: as
    // with a full backlog, a client that may wait tries again.
    if (!overloaded || dl.passed() || dl.remaining() < pause) return nullptr;
    stream.reset();
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(16));
    ec.clear();
  }
}

} // namespace npipe::detail
