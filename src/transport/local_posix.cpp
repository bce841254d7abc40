// SPDX-License-Identifier: MIT
// Linux local pipes, the server side: Unix domain stream sockets carrying
// npipe frames; posix_server's acceptor thread, admission and instance
// accounting. Its listening socket is made in listener_posix.cpp, its access
// policy is applied by access_posix.cpp. See docs/semantics.md for how each
// Win32 behaviour is kept.

#include "core/framing.hpp"
#include "core/name_map.hpp"
#include "core/protocol.hpp"
#include "transport/access_posix.hpp"
#include "transport/framed_connection.hpp"
#include "transport/listener_posix.hpp"
#include "transport/local_posix.hpp"
#include "transport/pipe_dir_posix.hpp"
#include "transport/posix_util.hpp"
#include "transport/transport.hpp"

#include <npipe/local_path.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <map>
#include <fcntl.h>
#include <mutex>
#include <poll.h>
#include <pwd.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace npipe::detail {

namespace {

void send_reply(int fd, protocol::status s, const server_options& o) {
  protocol::reply r;
  r.status = s;
  r.type = o.type;
  r.max_message = static_cast<std::uint32_t>(std::min<std::size_t>(o.max_message_size, UINT32_MAX));
  auto bytes = protocol::encode_reply(r);
  // A fresh socket's buffer is empty: this small write does not block.
  [[maybe_unused]] auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

// ----------------------------------------------------------------- server

class posix_server final : public server_impl, public std::enable_shared_from_this<posix_server> {
public:
  posix_server(pipe_name name, server_options opts, admission_sink sink)
      : name_(std::move(name)), opts_(std::move(opts)), sink_(std::move(sink)) {}
  ~posix_server() override { close(); }

  bool open(std::error_code& ec) {
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
    thread_ = std::thread([this] { run(); });
    return true;
  }

  std::unique_ptr<connection_impl> accept(deadline dl, std::error_code& ec) override {
    std::unique_lock lk(mu_);
    auto ready = [&] { return !ready_.empty() || closed_; };
    if (dl.never()) cv_.wait(lk, ready);
    else if (!cv_.wait_until(lk, dl.at, ready)) {
      ec = make_error_code(errc::timed_out);
      return nullptr;
    }
    if (ready_.empty()) {
      ec = make_error_code(errc::operation_aborted);
      return nullptr;
    }
    auto c = std::move(ready_.front());
    ready_.pop_front();
    return c;
  }

  void close() noexcept override {
    std::lock_guard serial(close_mu_); // close() may race with itself (signal thread, destructor)
    {
      std::lock_guard lk(mu_);
      if (closed_ && !thread_.joinable()) return;
      closed_ = true;
      cv_.notify_all();
    }
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
    std::deque<std::unique_ptr<connection_impl>> unaccepted;
    {
      std::lock_guard lk(mu_);
      unaccepted.swap(ready_);
    }
    unaccepted.clear(); // their release() takes mu_
  }

  bool is_open() const noexcept override {
    std::lock_guard lk(mu_);
    return !closed_;
  }
  std::string native_path() const override { return path_; }
  unsigned active_instances() const noexcept override {
    std::lock_guard lk(mu_);
    return active_;
  }

private:
  struct pending {
    int fd;
    clock::time_point until;
    peer_identity peer;
    std::vector<std::byte> buf;
    std::uint64_t seq = 0; // accept order: the oldest of a user goes first when slots run out
  };
  struct waiter {
    int fd;
    clock::time_point until;
    peer_identity peer;
    protocol::hello hello;
    std::vector<std::byte> extra;
  };

  void wake() noexcept {
    std::lock_guard lk(wake_mu_);
    if (wake_fd_ >= 0) {
      std::uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    }
  }

  void remove_name() noexcept {
    if (listen_.fd < 0) return;
    // Remove the name only if it is still ours (not a successor's socket),
    // and while we still listen: a live socket is never reclaimed, so
    // nobody can swap theirs in between the look and the unlink.
    struct stat st{};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == listen_.dev && st.st_ino == listen_.ino)
      ::unlink(path_.c_str());
    ::close(listen_.fd);
    listen_.fd = -1;
  }

  void release(std::int64_t uid) {
    {
      std::lock_guard lk(mu_);
      if (active_ > 0) --active_;
      if (auto it = per_user_.find(uid); it != per_user_.end() && --it->second == 0) per_user_.erase(it);
    }
    wake();
  }

  void run() {
    std::vector<pollfd> fds;
    clock::time_point accept_paused_until{};
    for (;;) {
      auto now = clock::now();
      fds.clear();
      fds.push_back({wake_fd_, POLLIN, 0});
      // The accept queue is always drained (unless out of descriptors): a
      // full set of handshake slots lets the oldest of the user holding the
      // most go, instead of leaving everyone else in the kernel's backlog.
      bool poll_listen = now >= accept_paused_until;
      fds.push_back({poll_listen ? listen_.fd : -1, POLLIN, 0});
      auto wake_at = clock::time_point::max();
      if (!poll_listen && now < accept_paused_until) wake_at = accept_paused_until;
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
      // Indexes into fds for the pending and waiting lists, before they change.
      std::size_t pbase = 2, wbase = 2 + pending_.size();
      std::vector<short> prev(polled_seq_.size()), wrev(waiters_.size());
      for (std::size_t i = 0; i < polled_seq_.size(); ++i) prev[i] = fds[pbase + i].revents;
      for (std::size_t i = 0; i < waiters_.size(); ++i) wrev[i] = fds[wbase + i].revents;

      // Waiters first: a freed instance goes to whoever waited longest.
      serve_waiters(wrev, now);
      if (fds[1].revents & POLLIN) accept_new(accept_paused_until);
      serve_pending(prev, now);
    }
    for (auto& p : pending_) ::close(p.fd);
    for (auto& w : waiters_) ::close(w.fd);
    pending_.clear();
    waiters_.clear();
  }

  void accept_new(clock::time_point& paused_until) {
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
      if (read_hello(p, now)) continue;
      hold(std::move(p));
    }
  }

  // Reads what `p` has sent; true when its handshake is over (admitted,
  // parked as a waiter, refused or closed), false while it is incomplete.
  bool read_hello(pending& p, clock::time_point now) {
    std::byte tmp[2048];
    ssize_t n = ::recv(p.fd, tmp, sizeof tmp, MSG_DONTWAIT);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
      ::close(p.fd); // gave up, or a probe
      return true;
    }
    p.buf.insert(p.buf.end(), tmp, tmp + n);
    protocol::hello h;
    std::size_t used = 0;
    std::error_code ec;
    auto st = protocol::decode_hello(p.buf, h, used, ec);
    if (st == protocol::decode_status::need_more) return false;
    if (st == protocol::decode_status::error) {
      send_reply(p.fd, protocol::status::protocol_error, opts_);
      ::close(p.fd);
      return true;
    }
    std::vector<std::byte> extra(p.buf.begin() + static_cast<std::ptrdiff_t>(used), p.buf.end());
    on_hello(p.fd, p.peer, std::move(h), std::move(extra), now);
    return true;
  }

  // A connection whose hello is not complete takes a handshake slot. One
  // user's unfinished handshakes count against max_per_user (with its
  // connections), and when every slot is taken the oldest unfinished
  // handshake of the user holding the most slots is let go: silent
  // connections from one user cannot lock another out.
  void hold(pending p) {
    const std::int64_t uid = p.peer.uid;
    if (opts_.max_per_user) {
      unsigned connected = 0;
      {
        std::lock_guard lk(mu_);
        if (auto it = per_user_.find(uid); it != per_user_.end()) connected = it->second;
      }
      if (pending_per_user_[uid] + connected >= opts_.max_per_user) {
        send_reply(p.fd, protocol::status::user_limit, opts_);
        ::close(p.fd);
        return;
      }
    }
    if (pending_.size() >= opts_.max_pending) let_one_go(uid);
    ++pending_per_user_[uid];
    pending_.push_back(std::move(p));
  }

  void let_one_go(std::int64_t newcomer) {
    std::int64_t victim = newcomer;
    unsigned most = pending_per_user_[newcomer];
    for (auto& [uid, count] : pending_per_user_) {
      if (count > most) {
        most = count;
        victim = uid;
      }
    }
    std::size_t oldest = pending_.size();
    for (std::size_t i = 0; i < pending_.size(); ++i)
      if (pending_[i].peer.uid == victim && (oldest == pending_.size() || pending_[i].seq < pending_[oldest].seq))
        oldest = i;
    if (oldest == pending_.size()) return; // the newcomer's user holds none: cannot happen while all are full
    send_reply(pending_[oldest].fd, protocol::status::overloaded, opts_);
    ::close(pending_[oldest].fd);
    forget_pending(pending_[oldest].peer.uid);
    pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(oldest));
  }

  void forget_pending(std::int64_t uid) {
    if (auto it = pending_per_user_.find(uid); it != pending_per_user_.end() && --it->second == 0)
      pending_per_user_.erase(it);
  }

  void serve_pending(const std::vector<short>& revents, clock::time_point now) {
    // By accept order (seq), not index: let_one_go may have removed entries
    // since revents was taken, and accept_new appended new ones.
    // pending_ stays in accept order (entries are appended and removed, never
    // reordered), so one walk pairs it with what was polled.
    std::vector<pending> keep;
    keep.reserve(pending_.size());
    auto old = std::move(pending_);
    pending_.clear();
    std::size_t k = 0;
    for (std::size_t i = 0; i < old.size(); ++i) {
      auto& p = old[i];
      while (k < polled_seq_.size() && polled_seq_[k] < p.seq) ++k;
      short rev = k < polled_seq_.size() && polled_seq_[k] == p.seq ? revents[k] : 0;
      if (rev && read_hello(p, now)) {
        forget_pending(p.peer.uid);
        continue;
      }
      if (now >= p.until) {
        ::close(p.fd); // handshake timeout: slow or silent client
        forget_pending(p.peer.uid);
        continue;
      }
      keep.push_back(std::move(p));
    }
    // Handshakes taken in meanwhile (on_hello never adds to pending_, but be safe).
    for (auto& p : pending_) keep.push_back(std::move(p));
    pending_.swap(keep);
  }

  void on_hello(int fd, peer_identity peer, protocol::hello h, std::vector<std::byte> extra, clock::time_point now) {
    if (h.version != protocol::version) {
      send_reply(fd, protocol::status::bad_version, opts_);
      ::close(fd);
      return;
    }
    if (h.max_message < framing::min_receive_limit) {
      // Byte pipes are cut into frames of the peer's limit: a tiny limit
      // would turn each reply into a flood of headers.
      send_reply(fd, protocol::status::protocol_error, opts_);
      ::close(fd);
      return;
    }
    std::error_code ec;
    auto asked = pipe_name::parse(h.name, ec);
    if (ec || !asked.is_local() || !(asked == name_)) {
      send_reply(fd, protocol::status::not_found, opts_); // a hashed-name collision, or a confused client
      ::close(fd);
      return;
    }
    if (h.forwarded) {
      // A gateway relays a remote client. Only a gateway of our own user (or
      // root) may vouch for one, and only if we accept remote clients at all.
      if (!opts_.accept_remote || (peer.uid != 0 && peer.uid != static_cast<std::int64_t>(::geteuid()))) {
        send_reply(fd, protocol::status::access_denied, opts_);
        ::close(fd);
        return;
      }
      peer = peer_identity{-1, -1, -1, std::move(h.remote_user), std::move(h.remote_address), {}};
    } else if (!allowed(opts_.access, peer)) {
      send_reply(fd, protocol::status::access_denied, opts_);
      ::close(fd);
      return;
    }
    switch (take_instance(peer.uid)) {
    case take::ok: admit(fd, std::move(peer), h, std::move(extra)); return;
    case take::user_full:
      send_reply(fd, protocol::status::user_limit, opts_);
      ::close(fd);
      return;
    case take::full: break;
    }
    if (h.wait_ms > 0 && waiters_.size() < opts_.max_waiting) {
      auto until = h.wait_ms == protocol::wait_forever ? clock::time_point::max()
                                                       : now + std::chrono::milliseconds(h.wait_ms);
      waiters_.push_back({fd, until, std::move(peer), std::move(h), std::move(extra)});
      return;
    }
    // Busy now; one that asked to wait but finds the waiting room full is
    // told so (not that its wait ran out: it never waited).
    send_reply(fd, h.wait_ms > 0 ? protocol::status::wait_queue_full : protocol::status::busy, opts_);
    ::close(fd);
  }

  unsigned instance_cap() const noexcept { return pipe_rules::instance_cap(opts_); }

  enum class take { ok, full, user_full };
  take take_instance(std::int64_t uid) {
    std::lock_guard lk(mu_);
    if (opts_.max_per_user) {
      auto it = per_user_.find(uid);
      if (it != per_user_.end() && it->second >= opts_.max_per_user) return take::user_full;
    }
    if (active_ >= instance_cap()) return take::full;
    ++active_;
    ++per_user_[uid];
    return take::ok;
  }

  void serve_waiters(const std::vector<short>& revents, clock::time_point now) {
    std::deque<waiter> keep;
    for (std::size_t i = 0; i < waiters_.size(); ++i) {
      auto& w = waiters_[i];
      bool gone = false;
      if (i < revents.size() && revents[i]) {
        // A waiting client says nothing; readable means it hung up (or misbehaves).
        std::byte b;
        ssize_t n = ::recv(w.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        gone = n >= 0 || (errno != EAGAIN && errno != EINTR);
      }
      if (gone) {
        ::close(w.fd);
        continue;
      }
      if (now >= w.until && active_instances() >= instance_cap()) {
        send_reply(w.fd, protocol::status::busy, opts_); // its wait is over (WaitNamedPipe's timeout)
        ::close(w.fd);
        continue;
      }
      keep.push_back(std::move(w));
    }
    waiters_.swap(keep);
    while (!waiters_.empty()) {
      auto t = take_instance(waiters_.front().peer.uid);
      if (t == take::full) break;
      auto w = std::move(waiters_.front());
      waiters_.pop_front();
      if (t == take::user_full) {
        send_reply(w.fd, protocol::status::user_limit, opts_);
        ::close(w.fd);
        continue;
      }
      admit(w.fd, std::move(w.peer), w.hello, std::move(w.extra));
    }
  }

  void admit(int fd, peer_identity peer, const protocol::hello& h, std::vector<std::byte> extra) {
    send_reply(fd, protocol::status::ok, opts_);
    framed_params p;
    p.name = name_;
    p.type = opts_.type;
    p.mode = pipe_rules::initial_read_mode(opts_.type, opts_.read_mode);
    p.max_message = opts_.max_message_size;
    p.peer_max_message = h.max_message;
    p.max_queued = opts_.max_queued_bytes;
    p.peer = std::move(peer);
    p.initial = std::move(extra);
    p.on_close = [w = weak_from_this(), uid = p.peer.uid] {
      if (auto s = w.lock()) s->release(uid);
    };
    if (sink_) {
      sink_(admitted_client{fd, std::move(p)});
      return;
    }
    bool local_peer = !p.peer.is_remote(); // a gateway reading our bytes is not the remote application
    auto c = std::make_unique<framed_connection>(std::make_unique<fd_stream>(fd, local_peer), std::move(p));
    std::lock_guard lk(mu_);
    ready_.push_back(std::move(c));
    cv_.notify_one();
  }

  pipe_name name_;
  server_options opts_;
  admission_sink sink_;
  std::string dir_, path_;
  listener listen_;
  std::mutex wake_mu_; // guards wake_fd_ once the acceptor runs
  int wake_fd_ = -1;
  std::thread thread_;

  std::mutex close_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<connection_impl>> ready_;
  unsigned active_ = 0;
  std::map<std::int64_t, unsigned> per_user_; // connections per uid
  bool closed_ = false;

  // Owned by the acceptor thread.
  static constexpr unsigned accept_batch = 256; // connections taken per wake-up before serving the others
  std::vector<pending> pending_;               // in accept order
  std::vector<std::uint64_t> polled_seq_;      // which pending entries the last poll watched
  std::map<std::int64_t, unsigned> pending_per_user_;
  std::uint64_t accept_seq_ = 0;
  std::deque<waiter> waiters_;
};

} // namespace

std::shared_ptr<server_impl> open_local_server(const pipe_name& name, const server_options& opts,
                                               std::error_code& ec, admission_sink sink) {
  auto s = std::make_shared<posix_server>(name, opts, std::move(sink));
  if (!s->open(ec)) return nullptr;
  return s;
}

} // namespace npipe::detail
