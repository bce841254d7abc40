// SPDX-License-Identifier: MIT
#include "transport/posix_util.hpp"

#include <cerrno>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include <map>
#include <mutex>
#include <vector>

namespace npipe::detail {

std::error_code errno_error(errc as, int e) { return make_error_code(as, e); }

std::error_code errno_error(int e) {
  switch (e) {
  case EPIPE:
  case ECONNRESET:
  case ECONNABORTED: return make_error_code(errc::broken_pipe, e);
  case ENOENT:
  case ECONNREFUSED: return make_error_code(errc::not_found, e);
  case EACCES:
  case EPERM: return make_error_code(errc::access_denied, e);
  case ETIMEDOUT: return make_error_code(errc::timed_out, e);
  case EADDRINUSE: return make_error_code(errc::name_in_use, e);
  case ENAMETOOLONG: return make_error_code(errc::invalid_name, e);
  case ENOTCONN:
  case EBADF: return make_error_code(errc::not_connected, e);
  case EINVAL: return make_error_code(errc::invalid_argument, e);
  default: return make_error_code(errc::system_error, e);
  }
}

void close_native_handle(std::intptr_t h) noexcept { ::close(static_cast<int>(h)); }

fd_stream::~fd_stream() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {
io_result recv_result(int fd, std::span<std::byte> buf, int flags, std::error_code& ec) noexcept {
  for (;;) {
    ssize_t n = ::recv(fd, buf.data(), buf.size(), flags);
    if (n > 0) return {static_cast<std::size_t>(n), io_status::ok};
    if (n == 0) return {0, buf.empty() ? io_status::ok : io_status::eof};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {0, io_status::would_block};
    if (errno == ECONNRESET) return {0, io_status::eof};
    ec = errno_error(errno);
    return {0, io_status::error};
  }
}
io_result send_result(int fd, std::span<const std::span<const std::byte>> bufs, int flags, std::error_code& ec) noexcept;
} // namespace

io_result fd_stream::read_some(std::span<std::byte> buf, std::error_code& ec) noexcept {
  return recv_result(fd_, buf, MSG_DONTWAIT, ec);
}

io_result fd_stream::read_wait(std::span<std::byte> buf, std::error_code& ec) noexcept {
  return recv_result(fd_, buf, 0, ec); // a non-blocking fd answers would_block; callers then wait
}

io_result fd_stream::write_some(std::span<const std::span<const std::byte>> bufs, std::error_code& ec) noexcept {
  return send_result(fd_, bufs, MSG_DONTWAIT, ec);
}

io_result fd_stream::write_wait(std::span<const std::span<const std::byte>> bufs, std::error_code& ec) noexcept {
  return send_result(fd_, bufs, 0, ec); // a blocking fd sleeps in sendmsg until all is taken
}

namespace {
io_result send_result(int fd_, std::span<const std::span<const std::byte>> bufs, int flags, std::error_code& ec) noexcept {
  iovec iov[8];
  std::size_t n = 0;
  for (auto b : bufs) {
    if (n == 8) break;
    iov[n].iov_base = const_cast<std::byte*>(b.data());
    iov[n].iov_len = b.size();
    ++n;
  }
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = n;
  for (;;) {
    ssize_t w = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | flags);
    if (w >= 0) return {static_cast<std::size_t>(w), io_status::ok};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {0, io_status::would_block};
    ec = errno_error(errno);
    return {0, io_status::error};
  }
}
} // namespace

bool wait_fd(int fd, short events, deadline dl, std::error_code& ec) noexcept {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, dl.poll_ms());
    if (r > 0) return true; // errors and hang-ups surface in the next read or write
    if (r == 0) {
      if (dl.passed()) return false;
      continue;
    }
    if (errno == EINTR) continue;
    ec = errno_error(errno);
    return false;
  }
}

bool fd_stream::wait(bool for_write, deadline dl, std::error_code& ec) noexcept {
  return wait_fd(fd_, for_write ? POLLOUT : POLLIN, dl, ec);
}

void fd_stream::shutdown() noexcept { ::shutdown(fd_, SHUT_RDWR); }

bool peer_took_everything(int fd) noexcept {
  // On a Unix stream socket, sent data stays charged to the sender until the
  // receiver reads it, so SIOCOUTQ is 0 exactly when the peer has it all.
  int n = -1;
  return ::ioctl(fd, SIOCOUTQ, &n) == 0 && n == 0;
}

bool fd_stream::peer_took_everything() noexcept { return local_peer_ && detail::peer_took_everything(fd_); }

std::string user_name(long uid) {
  if (uid < 0) return {};
  // getpwuid_r reads the user database (files, NSS) on every call; a server
  // asks once per connection, so remember the answers for the process's life.
  static std::mutex mu;
  static std::map<long, std::string> cache;
  {
    std::lock_guard lk(mu);
    if (auto it = cache.find(uid); it != cache.end()) return it->second;
  }
  std::vector<char> buf(4096);
  passwd pw{};
  passwd* out = nullptr;
  std::string name;
  if (::getpwuid_r(static_cast<uid_t>(uid), &pw, buf.data(), buf.size(), &out) == 0 && out) name = out->pw_name;
  std::lock_guard lk(mu);
  if (cache.size() < 4096) cache.emplace(uid, name);
  return name;
}

peer_identity peer_of(int fd) {
  peer_identity id;
  ucred c{};
  socklen_t len = sizeof c;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) == 0) {
    id.pid = c.pid;
    id.uid = c.uid;
    id.gid = c.gid;
    id.user = user_name(c.uid);
  }
  return id;
}

} // namespace npipe::detail
