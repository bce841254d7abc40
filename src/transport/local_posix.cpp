// SPDX-License-Identifier: MIT
// Linux local pipes, the server side: Unix domain stream sockets carrying
// npipe frames; posix_server (server_posix.hpp): open, accept, close, its
// acceptor thread and instance accounting, and open_local_server. Its
// admission is in admission_posix.cpp, its listening socket is made in
// listener_posix.cpp, its access policy is applied by access_posix.cpp. See
// docs/semantics.md for how each Win32 behaviour is kept.

#include "core/name_map.hpp"
#include "transport/framed_connection.hpp"
#include "transport/pipe_dir_posix.hpp"
#include "transport/posix_util.hpp"
#include "transport/server_posix.hpp"
#include "transport/transport.hpp"

#include <npipe/local_path.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <utility>

namespace npipe::detail {

bool posix_server::open(std::error_code& ec) {
  if (!check_server_options(opts_, ec)) return false;
  bool shared_default = opts_.pipe_dir.empty() && !std::getenv("NPIPE_DIR");
  dir_ = pipe_directory(opts_.pipe_dir);
  if (!check_server_directory(dir_, shared_default, ec)) return false;
  path_ = socket_path(dir_, name_, ec);
  if (ec) {
    set_error_detail("pipe directory path " + dir_ + " is too long for a Unix socket path");
    return false;
  }
  listener l;
  if (!create_listener(dir_, path_, name_, opts_, l, ec)) return false;
  listen_ = l;
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    ec = errno_error(errno);
    remove_name();
    return false;
  }
  try {
    thread_ = std::thread([this] { run(); });
  } catch (const std::system_error& e) { // out of threads: no name is left behind
    close();
    ec = e.code();
    set_error_detail("cannot start the server's admission thread");
    return false;
  }
  return true;
}

std::unique_ptr<connection_impl> posix_server::accept(deadline dl, std::error_code& ec) {
  auto a = clients_.pop(dl, ec);
  if (!a) return nullptr;
  bool local_peer = !a.params.peer.is_remote(); // a gateway reading our bytes is not the remote application
  auto free_instance = a.params.on_close; // before the handle leaves `a`: copying it may throw
  auto stream = std::make_unique<fd_stream>(static_cast<int>(a.handle), local_peer);
  a.release(); // the stream's now
  try {
    return std::make_unique<framed_connection>(std::move(stream), std::move(a.params));
  } catch (...) {
    if (free_instance) free_instance();
    throw;
  }
}

posix_server::~posix_server() { close(); }

void posix_server::close() noexcept {
  std::lock_guard serial(close_mu_); // close() may race with itself (signal thread, destructor)
  {
    std::lock_guard lk(mu_);
    if (closed_ && !thread_.joinable()) return;
    closed_ = true;
  }
  clients_.close(); // accept() returns; the unaccepted clients are dropped
  { std::lock_guard done(accept_mu_); } // an accept_ready() under way has finished: no more clients join the lists
  wake();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  {
    std::lock_guard lk(wake_mu_); // release() may still try to wake us
    if (wake_fd_ >= 0 && !thread_.joinable()) {
      ::close(wake_fd_);
      wake_fd_ = -1;
    }
  }
  remove_name();
}

void posix_server::wake() noexcept {
  std::lock_guard lk(wake_mu_);
  if (wake_fd_ >= 0) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }
}

void posix_server::remove_name() noexcept {
  if (listen_.fd < 0) return;
  // Remove the name only if it is still ours (not a successor's socket),
  // and while we still listen: a live socket is never reclaimed, so
  // nobody can swap theirs in between the look and the unlink.
  struct stat st{};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == listen_.dev && st.st_ino == listen_.ino)
    ::unlink(path_.c_str());
  // Refuses connects at once, and wakes a wait, through every descriptor of
  // the socket (the async server waits on one of its own).
  ::shutdown(listen_.fd, SHUT_RDWR);
  ::close(listen_.fd);
  listen_.fd = -1;
}

// Only a client waiting for an instance needs the acceptor to hear of a
// free one: otherwise a close costs it no wake-up (release_wakes_ is set,
// under mu_, whenever take_instance finds the instances full).
void posix_server::release(std::int64_t uid) {
  bool wanted = false;
  {
    std::lock_guard lk(mu_);
    if (active_ > 0) --active_;
    if (auto it = per_user_.find(uid); it != per_user_.end() && --it->second == 0) per_user_.erase(it);
    wanted = release_wakes_;
  }
  if (wanted) wake();
}

void posix_server::run() {
  std::vector<pollfd> fds;
  clock::time_point accept_paused_until{};
  for (;;) {
    auto now = clock::now();
    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    // The accept queue is always drained (unless out of descriptors): a
    // full set of handshake slots lets the oldest of the user holding the
    // most go, instead of leaving everyone else in the kernel's backlog.
    // (Unless the caller accepts: then it drains it, in accept_ready.)
    bool poll_listen = !caller_accepts_ && now >= accept_paused_until;
    fds.push_back({poll_listen ? listen_.fd : -1, POLLIN, 0});
    auto wake_at = clock::time_point::max();
    if (!poll_listen && now < accept_paused_until) wake_at = accept_paused_until;
    std::size_t polled_waiters = 0;
    {
      // accept_ready() may add to both lists meanwhile (and wakes us):
      // they are paired with what was polled by accept order, and waiters
      // are only appended.
      std::lock_guard lk(admit_mu_);
      polled_seq_.clear();
      for (auto& p : pending_) {
        fds.push_back({p.fd, POLLIN, 0});
        polled_seq_.push_back(p.seq);
        wake_at = std::min(wake_at, p.until);
      }
      for (auto& w : waiters_) {
        fds.push_back({w.fd, POLLIN, 0});
        wake_at = std::min(wake_at, w.until);
      }
      polled_waiters = waiters_.size();
    }
    int ms = -1;
    if (wake_at != clock::time_point::max())
      ms = static_cast<int>(std::clamp<long long>(
          std::chrono::ceil<std::chrono::milliseconds>(wake_at - now).count(), 0, INT_MAX));
    int r = ::poll(fds.data(), fds.size(), ms);
    if (r < 0 && errno != EINTR) break;
    now = clock::now();
    // Drain the wake-up before looking at closed_: close() sets closed_ and
    // then wakes us, so a wake-up consumed here has its closed_ visible.
    if (fds[0].revents) {
      std::uint64_t v;
      [[maybe_unused]] auto n = ::read(wake_fd_, &v, sizeof v);
    }
    {
      std::lock_guard lk(mu_);
      if (closed_) break;
    }
    std::size_t pbase = 2, wbase = 2 + polled_seq_.size();
    std::vector<short> prev(polled_seq_.size()), wrev(polled_waiters);
    for (std::size_t i = 0; i < polled_seq_.size(); ++i) prev[i] = fds[pbase + i].revents;
    for (std::size_t i = 0; i < polled_waiters; ++i) wrev[i] = fds[wbase + i].revents;

    std::lock_guard lk(admit_mu_);
    // Waiters first: a freed instance goes to whoever waited longest.
    serve_waiters(wrev, now);
    if (fds[1].revents & POLLIN) accept_new(accept_paused_until);
    serve_pending(prev, now);
  }
  std::lock_guard lk(admit_mu_);
  for (auto& p : pending_) ::close(p.fd);
  for (auto& w : waiters_) ::close(w.fd);
  pending_.clear();
  waiters_.clear();
}

void posix_server::accept_new(clock::time_point& paused_until, std::vector<admitted_client>* batch) {
  for (unsigned i = 0; i < accept_batch; ++i) {
    // Blocking sockets: a read with no deadline is then one recv() that sleeps
    // in the kernel. The acceptor itself only uses MSG_DONTWAIT on them.
    int fd = ::accept4(listen_.fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: back off instead of spinning on a readable listener.
        paused_until = clock::now() + std::chrono::milliseconds(100);
      }
      return;
    }
    if (opts_.in_buffer_size) {
      int v = static_cast<int>(std::min<std::size_t>(opts_.in_buffer_size, INT_MAX));
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    }
    if (opts_.out_buffer_size) {
      int v = static_cast<int>(std::min<std::size_t>(opts_.out_buffer_size, INT_MAX));
      ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    }
    auto now = clock::now();
    auto limit = opts_.handshake_timeout < timeout::zero() ? clock::time_point::max() : now + opts_.handshake_timeout;
    pending p{fd, limit, peer_of(fd), {}, ++accept_seq_};
    // A client says hello as it connects: usually it is here already, and
    // the connection never needs a handshake slot.
    if (read_hello(p, now, batch)) continue;
    hold(std::move(p));
    if (batch) wake_acceptor_ = true; // it polls the handshake slots
  }
}

std::intptr_t posix_server::listen_handle() const noexcept {
  if (!caller_accepts_ || listen_.fd < 0) return -1;
  return ::fcntl(listen_.fd, F_DUPFD_CLOEXEC, 0);
}

void posix_server::accept_on_own_thread() noexcept {
  caller_accepts_ = false;
  wake(); // it polls the listening socket from its next turn
}

std::chrono::milliseconds posix_server::accept_ready(std::vector<admitted_client>& batch) {
  clock::time_point paused{};
  bool wake_it = false;
  {
    std::lock_guard lk(accept_mu_); // one batch at a time; close() waits for it
    if (!caller_accepts_ || !is_open()) return {};
    std::lock_guard slots(admit_mu_);
    try {
      accept_new(paused, &batch);
    } catch (const std::bad_alloc&) {
      // Out of memory mid-batch: what was admitted is delivered; the rest waits in the backlog.
    }
    wake_it = std::exchange(wake_acceptor_, false);
  }
  if (wake_it) wake();
  auto now = clock::now();
  return paused > now ? std::chrono::ceil<std::chrono::milliseconds>(paused - now) : std::chrono::milliseconds(0);
}

std::shared_ptr<server_impl> open_local_server(const pipe_name& name, const server_options& opts,
                                               std::error_code& ec, std::function<void()> wake, bool caller_accepts) {
  auto s = std::make_shared<posix_server>(name, opts, std::move(wake), caller_accepts);
  if (!s->open(ec)) return nullptr;
  return s;
}

} // namespace npipe::detail
