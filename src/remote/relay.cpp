// SPDX-License-Identifier: MIT
#include "remote/relay.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(post.hpp)
#include NPIPE_NET_HEADER(write.hpp)

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <npipe/error.hpp>

namespace npipe::detail {

namespace {

constexpr std::size_t relay_buffer = 64 * 1024;
constexpr int burst = 16; // reads per direction before letting other connections run

std::byte* relay_scratch() {
  thread_local std::unique_ptr<std::byte[]> buf(new std::byte[relay_buffer]);
  return buf.get();
}

} // namespace

// ---------------------------------------------------------------------- relay

relay::relay(std::unique_ptr<remote_link> link, unix_socket local, timeout idle, sides names)
    : link_(std::move(link)), local_sock_(std::move(local)), timer_(local_sock_.get_executor()), idle_(idle),
      remote_(std::move(names.remote)), local_(std::move(names.local)) {}

std::string relay::remote_end() const {
  return link_->session.end_error() ? link_->session.end_detail() : remote_ + " closed";
}

void relay::start(std::function<void(const std::string&)> on_end, std::function<void(protocol::status)> on_reply) {
  on_end_ = std::move(on_end);
  on_reply_ = std::move(on_reply);
  last_ = std::chrono::steady_clock::now();
  pump_up();
  wait_local();
  idle_check(idle_);
}

void relay::idle_check(timeout t) {
  if (t < timeout::zero()) return;
  timer_.expires_after(t);
  timer_.async_wait([self = shared_from_this()](const net_error_code& ec) {
    if (ec || self->closed_) return;
    // Until the local side has said something (the server's answer to the
    // hello), a quiet link is a client waiting for a busy pipe: its wait is
    // the server's to end, not the idle timeout's.
    if (!self->local_spoke_) return self->idle_check(self->idle_);
    auto quiet = std::chrono::steady_clock::now() - self->last_;
    if (quiet >= self->idle_)
      return self->close("no bytes either way for " + std::to_string(self->idle_.count()) + " ms (idle timeout)");
    self->idle_check(std::chrono::ceil<timeout>(self->idle_ - quiet));
  });
}

// remote -> local
void relay::pump_up() {
  if (closed_) return;
  for (int i = 0; i < burst; ++i) {
    std::size_t n = 0;
    tls::io r = link_->session.read(relay_scratch(), relay_buffer, n);
    if (r == tls::io::end) return close(remote_end());
    if (r != tls::io::done) return wait_link(r, &relay::pump_up);
    last_ = std::chrono::steady_clock::now();
    ssize_t k;
    do k = ::send(local_sock_.native_handle(), relay_scratch(), n, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (k < 0 && errno == EINTR);
    if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return close(local_ + " closed");
    std::size_t sent = k > 0 ? static_cast<std::size_t>(k) : 0;
    if (sent < n) { // the local side is slower: keep the rest, read no more until it is taken
      up_pending_.assign(relay_scratch() + sent, relay_scratch() + n);
      net::async_write(local_sock_, net::buffer(up_pending_), [self = shared_from_this()](const net_error_code& ec, std::size_t) {
        if (ec) return self->close(self->local_ + " closed");
        self->up_pending_ = {};
        self->pump_up();
      });
      return;
    }
  }
  net::post(local_sock_.get_executor(), [self = shared_from_this()] { self->pump_up(); });
}

// local -> remote
void relay::wait_local() {
  local_sock_.async_wait(unix_socket::wait_read, [self = shared_from_this()](const net_error_code& ec) {
    if (ec || self->closed_) return self->close();
    self->pump_down();
  });
}

void relay::pump_down() {
  for (int i = 0; i < burst; ++i) {
    ssize_t n;
    do n = ::recv(local_sock_.native_handle(), relay_scratch(), relay_buffer, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n == 0) return close(local_ + " closed"); // everything it sent has gone out
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? wait_local() : close(local_ + " failed");
    last_ = std::chrono::steady_clock::now();
    local_spoke_ = true;
    std::size_t len = static_cast<std::size_t>(n), off = 0;
    if (on_reply_) watch_reply(relay_scratch(), len);
    tls::io r = link_->write_from(relay_scratch(), len, off);
    if (r == tls::io::end) return close(remote_end());
    if (r != tls::io::done) { // the remote side is slower: keep the rest, read no more until it is taken
      down_pending_.assign(relay_scratch() + off, relay_scratch() + len);
      down_off_ = 0;
      return wait_link(r, &relay::flush_down);
    }
  }
  net::post(local_sock_.get_executor(), [self = shared_from_this()] { self->pump_down(); });
}

void relay::flush_down() {
  std::size_t from = down_off_;
  tls::io r = link_->write_from(down_pending_.data(), down_pending_.size(), down_off_);
  if (down_off_ != from) last_ = std::chrono::steady_clock::now();
  if (r == tls::io::end) return close(remote_end());
  if (r != tls::io::done) return wait_link(r, &relay::flush_down);
  down_pending_ = {};
  pump_down();
}

void relay::wait_link(tls::io want, void (relay::*then)()) {
  link_->wait(want, [self = shared_from_this(), then](std::error_code ec) {
    if (ec || self->closed_) return self->close();
    (self.get()->*then)();
  });
}

// The local side's first 16 bytes are its answer to the hello.
void relay::watch_reply(const std::byte* p, std::size_t n) {
  std::size_t take = std::min(n, reply_.size() - reply_got_);
  std::memcpy(reply_.data() + reply_got_, p, take);
  reply_got_ += take;
  if (reply_got_ < reply_.size()) return;
  protocol::reply r;
  std::error_code ec;
  auto st = protocol::decode_reply(reply_, r, ec) == protocol::decode_status::done ? r.status
                                                                                 : protocol::status::protocol_error;
  std::exchange(on_reply_, nullptr)(st);
}

void relay::close(std::string why) {
  if (closed_) return;
  closed_ = true;
  timer_.cancel();
  std::error_code ignore;
  local_sock_.close(into(ignore));
  link_->close(true); // close_notify if TLS (it is up once a relay starts)
  on_reply_ = nullptr; // no answer came: on_end says why
  if (auto f = std::move(on_end_)) f(why);
}

} // namespace npipe::detail
