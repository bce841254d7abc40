// SPDX-License-Identifier: MIT
// posix_server's admission (server_posix.hpp), on its acceptor thread or on
// the thread in accept_ready (`batch`, its caller's, is then where admitted clients go),
// always under admit_mu_: a
// client's hello, the handshake slots and whom to let go when they are full,
// the checks (version, name, forwarded clients, access policy), the instance
// and per-user caps, waiting clients, and the hand-over of an admitted
// client to the server's admission_queue.

#include "core/framing.hpp"
#include "core/protocol.hpp"
#include "transport/access_posix.hpp"
#include "transport/posix_util.hpp"
#include "transport/server_posix.hpp"
#include "transport/transport.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <deque>
#include <sys/socket.h>
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

} // namespace

// Reads what `p` has sent; true when its handshake is over (admitted,
// parked as a waiter, refused or closed), false while it is incomplete.
bool posix_server::read_hello(pending& p, clock::time_point now, std::vector<admitted_client>* batch) {
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
  on_hello(p.fd, p.peer, std::move(h), std::move(extra), now, batch);
  return true;
}

// A connection whose hello is not complete takes a handshake slot. One
// user's unfinished handshakes count against max_per_user (with its
// connections), and when every slot is taken the oldest unfinished
// handshake of the user holding the most slots is let go: silent
// connections from one user cannot lock another out.
void posix_server::hold(pending p) {
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

void posix_server::let_one_go(std::int64_t newcomer) {
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

void posix_server::forget_pending(std::int64_t uid) {
  if (auto it = pending_per_user_.find(uid); it != pending_per_user_.end() && --it->second == 0)
    pending_per_user_.erase(it);
}

void posix_server::serve_pending(const std::vector<short>& revents, clock::time_point now) {
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

void posix_server::on_hello(int fd, peer_identity peer, protocol::hello h, std::vector<std::byte> extra,
                            clock::time_point now, std::vector<admitted_client>* batch) {
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
  case take::ok: admit(fd, std::move(peer), h, std::move(extra), batch); return;
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
    if (batch) wake_acceptor_ = true; // it watches the waiters
    return;
  }
  // Busy now; one that asked to wait but finds the waiting room full is
  // told so (not that its wait ran out: it never waited).
  send_reply(fd, h.wait_ms > 0 ? protocol::status::wait_queue_full : protocol::status::busy, opts_);
  ::close(fd);
}

posix_server::take posix_server::take_instance(std::int64_t uid) {
  std::lock_guard lk(mu_);
  if (opts_.max_per_user) {
    auto it = per_user_.find(uid);
    if (it != per_user_.end() && it->second >= opts_.max_per_user) return take::user_full;
  }
  if (active_ >= instance_cap()) {
    release_wakes_ = true; // a client may wait for this instance: release() must wake us from now on
    return take::full;
  }
  ++active_;
  ++per_user_[uid];
  return take::ok;
}

void posix_server::serve_waiters(const std::vector<short>& revents, clock::time_point now) {
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
  if (waiters_.empty()) {
    std::lock_guard lk(mu_);
    release_wakes_ = false;
  }
}

void posix_server::admit(int fd, peer_identity peer, const protocol::hello& h, std::vector<std::byte> extra,
                         std::vector<admitted_client>* batch) {
  send_reply(fd, protocol::status::ok, opts_);
  connection_params p;
  p.name = name_;
  p.type = opts_.type;
  p.mode = pipe_rules::initial_read_mode(opts_.type, opts_.read_mode);
  p.max_message = opts_.max_message_size;
  p.peer_max_message = h.max_message;
  p.peer = std::move(peer);
  p.initial = std::move(extra);
  p.on_close = [w = weak_from_this(), uid = p.peer.uid] {
    if (auto s = w.lock()) s->release(uid);
  };
  if (batch) batch->emplace_back(fd, std::move(p));
  else clients_.push(admitted_client(fd, std::move(p)));
}

} // namespace npipe::detail
