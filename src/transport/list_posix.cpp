// SPDX-License-Identifier: MIT
// Linux local pipes, the names: the pipe directory, a name's socket path,
// and list_local_pipes() (which reads the kernel's socket table to tell
// live pipes from stale files).

#include "core/name_map.hpp"
#include "transport/pipe_dir_posix.hpp"
#include "transport/posix_util.hpp"

#include <npipe/local_path.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace npipe {

std::string pipe_directory(std::string_view override_dir) {
  if (!override_dir.empty()) return std::string(override_dir);
  if (const char* env = std::getenv("NPIPE_DIR"); env && *env) return env;
  return default_pipe_directory;
}

std::string local_path(const pipe_name& name, std::error_code& ec, std::string_view override_dir) {
  return detail::socket_path(pipe_directory(override_dir), name, ec);
}

} // namespace npipe

// For list_local_pipes() only: the kernel's table of Unix sockets.
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/tcp.h>
#include <set>
#include <sys/sysmacros.h>

namespace npipe::detail {
namespace {

// The files (device, inode) that listening Unix sockets are bound to, from
// the kernel's socket table (NETLINK_SOCK_DIAG, what `ss -xl` reads; no
// privilege needed). A probe that gets EACCES cannot tell a live pipe of
// another user from a stale file; this can. False when the table cannot be
// read (then such a file's state stays unknown).
bool listening_socket_files(std::set<std::pair<dev_t, ino_t>>& out) {
  int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return false;
  struct {
    nlmsghdr nlh;
    unix_diag_req req;
  } ask{};
  ask.nlh.nlmsg_len = sizeof ask;
  ask.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  ask.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  ask.req.sdiag_family = AF_UNIX;
  ask.req.udiag_states = 1u << TCP_LISTEN;
  ask.req.udiag_show = UDIAG_SHOW_VFS;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  bool ok = ::sendto(fd, &ask, sizeof ask, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) ==
            static_cast<ssize_t>(sizeof ask);
  alignas(nlmsghdr) char buf[32 * 1024];
  for (bool done = !ok; !done;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) { // the kernel answers at once; do not hang a listing on it
      ok = false;
      break;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      ok = false;
      break;
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
        ok = h->nlmsg_type == NLMSG_DONE;
        done = true;
        break;
      }
      auto* m = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
      int alen = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
      for (auto* a = reinterpret_cast<rtattr*>(m + 1); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        if (a->rta_type != UNIX_DIAG_VFS || RTA_PAYLOAD(a) < sizeof(unix_diag_vfs)) continue;
        unix_diag_vfs v;
        std::memcpy(&v, RTA_DATA(a), sizeof v);
        // The kernel's device number (major << 20 | minor), not stat()'s encoding.
        out.insert({makedev(v.udiag_vfs_dev >> 20, v.udiag_vfs_dev & 0xfffff), v.udiag_vfs_ino});
      }
    }
  }
  ::close(fd);
  return ok;
}

} // namespace
} // namespace npipe::detail

namespace npipe {

std::vector<local_pipe_info> list_local_pipes(std::error_code& ec, std::string_view override_dir) {
  ec.clear();
  std::vector<local_pipe_info> out;
  std::string dir = pipe_directory(override_dir);
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (errno != ENOENT) ec = detail::errno_error(errno);
    return out;
  }
  std::set<std::pair<dev_t, ino_t>> listening; // read once, when a file refuses this user
  bool listening_read = false, have_listening = false;
  while (dirent* e = ::readdir(d)) {
    std::string file = e->d_name;
    if (file == "." || file == ".." || file.rfind(".t", 0) == 0) continue;
    local_pipe_info info;
    info.file = file;
    info.path = dir + "/" + file;
    struct stat st{};
    if (::lstat(info.path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    info.owner_uid = static_cast<long>(st.st_uid);
    peer_identity owner;
    switch (detail::probe(info.path, owner)) {
    case detail::probe_result::live: info.state = local_pipe_state::live; break;
    case detail::probe_result::stale: info.state = local_pipe_state::stale; break;
    case detail::probe_result::gone: continue; // removed since readdir
    case detail::probe_result::unknown:
      // Connecting needs write permission on the file, whether or not a
      // server listens: look it up among the listening sockets instead.
      if (::access(info.path.c_str(), W_OK) != 0 && errno == EACCES) {
        if (!listening_read) have_listening = detail::listening_socket_files(listening), listening_read = true;
        if (have_listening)
          info.state = listening.count({st.st_dev, st.st_ino}) ? local_pipe_state::live_not_accessible
                                                               : local_pipe_state::stale;
      }
      break;
    }
    info.live = info.state == local_pipe_state::live || info.state == local_pipe_state::live_not_accessible;
    out.push_back(std::move(info));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.file < b.file; });
  return out;
}

} // namespace npipe
