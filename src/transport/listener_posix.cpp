// SPDX-License-Identifier: MIT
// A Linux local-pipe server's listening socket: bound in a private temporary
// directory, given its mode and group, then its name in the pipe directory.

#include "transport/listener_posix.hpp"

#include "core/name_map.hpp"
#include "transport/access_posix.hpp"
#include "transport/pipe_dir_posix.hpp"
#include "transport/posix_util.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

namespace npipe::detail {

// Binds in a private temporary directory (so the mode is right before anyone
// can connect), then gives the socket its name (take_name, reclaim_posix.cpp).
bool create_listener(const std::string& dir, const std::string& path, const pipe_name& name,
                     const server_options& o, listener& out, std::error_code& ec) {
  std::string tmpl = dir + "/.tXXXXXX";
  if (tmpl.size() + 2 > max_socket_path) {
    set_error_detail("pipe directory path " + dir + " is too long for a Unix socket path");
    ec = make_error_code(errc::invalid_name);
    return false;
  }
  std::vector<char> tbuf(tmpl.begin(), tmpl.end());
  tbuf.push_back('\0');
  if (!::mkdtemp(tbuf.data())) {
    set_error_detail("cannot create a temporary directory in " + dir + ": " + std::strerror(errno));
    ec = errno_error(errno);
    return false;
  }
  std::string tmpdir = tbuf.data();
  std::string tmp = tmpdir + "/s";
  struct cleanup {
    const std::string &t, &d;
    ~cleanup() {
      ::unlink(t.c_str());
      ::rmdir(d.c_str());
    }
  } cleanup{tmp, tmpdir};

  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ec = errno_error(errno);
    return false;
  }
  auto fail = [&](int e) {
    ec = errno_error(e);
    ::close(fd);
    return false;
  };
  sockaddr_un sa;
  socklen_t len = 0;
  make_sockaddr(tmp, sa, len);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0) return fail(errno);
  if (::chmod(tmp.c_str(), socket_mode(o.access)) != 0) return fail(errno);
  if (o.access.who == access_policy::kind::group && ::chown(tmp.c_str(), static_cast<uid_t>(-1), o.access.gid) != 0) {
    set_error_detail("cannot give the socket to group " + std::to_string(o.access.gid) + ": " + std::strerror(errno));
    return fail(errno);
  }
  if (::listen(fd, SOMAXCONN) != 0) return fail(errno);

  dev_t dev = 0;
  ino_t ino = 0;
  if (!take_name(tmp, path, name, dev, ino, ec)) {
    ::close(fd);
    return false;
  }
  out = {fd, dev, ino};
  return true;
}

} // namespace npipe::detail
