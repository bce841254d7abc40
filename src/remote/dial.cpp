// SPDX-License-Identifier: MIT
// Reaching a gateway (dial.hpp): the plan, and the blocking front
// (getaddrinfo, a non-blocking connect and poll() within the deadline, and
// tls_stream, the blocking client's byte stream over a session).

#include "remote/dial.hpp"
#include "remote/remote.hpp"
#include "remote/tls_session.hpp"
#include "runtime/net_error_posix.hpp"
#include "transport/client_handshake.hpp"
#include "transport/posix_util.hpp"

#include <npipe/remote.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(connect.hpp)

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <utility>

namespace npipe::detail {

std::string endpoint_text(const std::string& host, std::uint16_t port) {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

void tune_tcp(int fd) noexcept {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  int idle = 30, interval = 10, count = 3; // a vanished host is noticed within about a minute
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

bool plan_dial(const pipe_name& name, const client_options& opts, deadline dl, dial_plan& plan, std::error_code& ec) {
  if (!tls::check_options(tls::role::client, opts.tls, ec)) return false;
  plan.host = name.host();
  plan.port = name.port() ? name.port() : default_remote_port;
  plan.where = endpoint_text(plan.host, plan.port);
  if (!opts.tls.insecure) {
    plan.tls = tls::context::for_client(opts.tls, ec);
    if (!plan.tls) return false;
  }
  plan.net = dl.never() ? deadline::after(defaults::handshake_timeout)
                        : deadline{std::max(dl.at, clock::now() + handshake_slack)};
  plan.may_wait = dl.never() || dl.remaining() > timeout::zero();
  return true;
}

namespace {

// A byte_stream over a TLS session on a non-blocking socket it owns, for
// the blocking client: the session does the TLS, this waits with poll() for
// what it asked for. A reader and a writer may call at once and a session
// is not thread-safe: every session call is under a mutex, held only while
// the (non-blocking) call runs, never while waiting.
class tls_stream final : public byte_stream {
public:
  tls_stream(int fd, std::string peer) noexcept : fd_(fd), s_(fd, std::move(peer)) {}
  ~tls_stream() override { ::close(fd_); }
  /// Before the handshake: start_client(); after it: native(), plaintext_answer().
  tls::session& session() noexcept { return s_; }
  /// Run the client handshake until `dl` (before any other call; no lock).
  /// False with ec and detail on failure.
  bool handshake(deadline dl, std::error_code& ec) noexcept {
    for (;;) {
      tls::io r = s_.handshake();
      if (r == tls::io::done) return true;
      if (r == tls::io::end) {
        ec = s_.end_error();
        return false;
      }
      if (!wait_fd(fd_, r == tls::io::want_read ? POLLIN : POLLOUT, dl, ec)) {
        if (!ec) {
          set_error_detail(s_.peer() + " did not complete the TLS handshake in time");
          ec = make_error_code(errc::timed_out);
        }
        return false;
      }
    }
  }
  io_result read_some(std::span<std::byte> buf, std::error_code& ec) noexcept override {
    std::lock_guard lk(mu_);
    if (buf.empty()) return {0, io_status::ok};
    std::size_t n = 0;
    tls::io r = s_.read_all(buf.data(), buf.size(), n);
    if (r != tls::io::done) return failed(r, true, ec);
    read_wants_write_ = false;
    // A full buffer may leave whole records read ahead inside OpenSSL, which
    // poll() cannot see; else at most part of one is left (the socket has the rest).
    buffered_ = n == buf.size() && s_.buffered();
    return {n, io_status::ok};
  }

  io_result write_some(std::span<const std::span<const std::byte>> bufs, std::error_code& ec) noexcept override {
    std::lock_guard lk(mu_);
    std::size_t n = 0;
    tls::io r = s_.write_gathered(bufs, n);
    if (r == tls::io::done) {
      write_wants_read_ = false;
      return {n, io_status::ok};
    }
    auto res = failed(r, false, ec);
    if (res.status == io_status::eof) { // a write cannot meet a clean end: the peer is gone
      ec = make_error_code(errc::broken_pipe);
      res.status = io_status::error;
    }
    return res;
  }

  bool wait(bool for_write, deadline dl, std::error_code& ec) noexcept override {
    short events = 0;
    {
      std::lock_guard lk(mu_);
      if (!for_write && (buffered_ || s_.pending())) return true; // bytes already inside OpenSSL
      events = for_write ? (write_wants_read_ ? POLLIN : POLLOUT) : (read_wants_write_ ? POLLOUT : POLLIN);
    }
    return wait_fd(fd_, events, dl, ec);
  }

  // The TCP socket: readable when a record (or part of one) arrives. What
  // OpenSSL has already read ahead is not seen there, which is why the
  // native-handle contract says to read with no_wait until timed_out.
  std::intptr_t native_handle() const noexcept override { return fd_; }

  void shutdown() noexcept override {
    {
      std::lock_guard lk(mu_);
      if (!std::exchange(shut_, true)) s_.shutdown(); // close_notify if it can go without blocking
    }
    ::shutdown(fd_, SHUT_RDWR);
  }

private:
  io_result failed(tls::io r, bool reading, std::error_code& ec) noexcept {
    if (r == tls::io::want_read || r == tls::io::want_write) {
      (reading ? read_wants_write_ : write_wants_read_) = r == (reading ? tls::io::want_write : tls::io::want_read);
      return {0, io_status::would_block};
    }
    if (!s_.end_error()) return {0, io_status::eof}; // close_notify, or TCP closed without it
    ec = s_.end_error();
    return {0, io_status::error};
  }

  int fd_;
  tls::session s_;
  std::mutex mu_;
  bool read_wants_write_ = false;  // the last read needs the socket writable
  bool write_wants_read_ = false;  // the last write needs the socket readable
  bool shut_ = false;
  bool buffered_ = false;          // whole records may wait inside OpenSSL (read-ahead)
};

struct addrinfo_deleter {
  void operator()(addrinfo* a) const noexcept { ::freeaddrinfo(a); }
};

// A connected, non-blocking TCP socket to one of host's addresses, or -1.
int dial(const std::string& host, std::uint16_t port, deadline dl, const std::string& where, std::error_code& ec) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  addrinfo* raw = nullptr;
  std::string service = std::to_string(port);
  int g = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &raw);
  std::unique_ptr<addrinfo, addrinfo_deleter> list(raw);
  if (g != 0) {
    set_error_detail("cannot resolve " + host + ": " + ::gai_strerror(g));
    ec = make_error_code(errc::not_found);
    return -1;
  }
  int last = ECONNREFUSED;
  for (addrinfo* a = list.get(); a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last = errno;
      continue;
    }
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) return fd;
    if (errno == EINPROGRESS) {
      std::error_code wec;
      if (!wait_fd(fd, POLLOUT, dl, wec)) {
        ::close(fd);
        if (wec) {
          ec = wec;
          return -1;
        }
        set_error_detail("no TCP connection to " + where + " within the deadline");
        ec = make_error_code(errc::timed_out);
        return -1;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0) return fd;
      last = err;
    } else {
      last = errno;
    }
    ::close(fd);
  }
  if (last == ECONNREFUSED) {
    set_error_detail("nothing listens on " + where + " (is an npipe gateway running there, on this port?)");
    ec = make_error_code(errc::not_found, last);
  } else {
    set_error_detail("cannot reach " + where + ": " + std::strerror(last));
    ec = errno_error(last);
  }
  return -1;
}

} // namespace

std::unique_ptr<byte_stream> dial_gateway(const dial_plan& plan, peer_identity& server, bool& overloaded,
                                          std::error_code& ec) {
  overloaded = false;
  int fd = dial(plan.host, plan.port, plan.net, plan.where, ec);
  if (fd < 0) return nullptr;
  tune_tcp(fd);
  server = peer_identity{-1, -1, -1, "insecure", plan.where, {}};
  if (!plan.tls) return std::make_unique<fd_stream>(fd, /*local_peer=*/false);
  auto t = std::make_unique<tls_stream>(fd, "the gateway at " + plan.where);
  if (!t->session().start_client(plan.tls, plan.host, plan.where, ec)) return nullptr;
  // A gateway that never answers must not hold a client without a deadline forever.
  if (!t->handshake(plan.net, ec)) {
    overloaded = t->session().plaintext_answer() == protocol::status::overloaded;
    return nullptr;
  }
  if (!tls::peer_identity_of(t->session().native(), *plan.tls, server.user, ec)) return nullptr;
  return t;
}

} // namespace npipe::detail

// ---------------------------------------------------------------- async front

namespace npipe::detail {

void gateway_dialer::start(std::function<void(result)> done) {
  done_ = std::move(done);
  resolver_.async_resolve(plan_.host, std::to_string(plan_.port),
                          std_errors([self = shared_from_this()](const std::error_code& e,
                                                                 net::ip::tcp::resolver::results_type results) {
                            if (!self->done_) return;
                            if (e) return self->fail(make_error_code(errc::not_found),
                                                     "cannot resolve " + self->plan_.host + ": " + e.message());
                            net::async_connect(self->tcp_, results,
                                               std_errors([self](const std::error_code& ce, const auto&) {
                                                 self->on_connect(ce);
                                               }));
                          }));
}

void gateway_dialer::cancel() noexcept {
  done_ = nullptr;
  std::error_code ignore;
  resolver_.cancel();
  tcp_.close(into(ignore));
}

void gateway_dialer::on_connect(const std::error_code& ec) {
  if (!done_) return;
  if (ec == net_error(net::error::connection_refused))
    return fail(make_error_code(errc::not_found),
                "nothing listens on " + plan_.where + " (is an npipe gateway running there, on this port?)");
  if (ec) return fail(io_error(ec), "cannot reach " + plan_.where + ": " + ec.message());
  std::error_code ignore;
  tcp_.non_blocking(true, into(ignore));
  tune_tcp(tcp_.native_handle());
  if (!plan_.tls) return step();
  session_ = std::make_unique<tls::session>(tcp_.native_handle(), "the gateway at " + plan_.where);
  std::error_code sec;
  if (!session_->start_client(plan_.tls, plan_.host, plan_.where, sec)) return fail(sec, last_error_detail());
  step();
}

// One step of the TLS handshake; the link once it is done.
void gateway_dialer::step() {
  result r;
  r.server = peer_identity{-1, -1, -1, "insecure", plan_.where, {}};
  if (session_) {
    tls::io io = session_->handshake();
    if (io == tls::io::end)
      return fail(session_->end_error(), session_->end_detail(),
                  session_->plaintext_answer() == protocol::status::overloaded);
    if (io != tls::io::done) {
      tcp_.async_wait(io == tls::io::want_write ? net::ip::tcp::socket::wait_write : net::ip::tcp::socket::wait_read,
                      std_errors([self = shared_from_this()](const std::error_code& e) {
                        if (!self->done_) return;
                        if (e) return self->fail(io_error(e), "the TLS handshake was interrupted");
                        self->step();
                      }));
      return;
    }
    std::error_code ec;
    if (!tls::peer_identity_of(session_->native(), *plan_.tls, r.server.user, ec)) return fail(ec, last_error_detail());
  }
  r.session = std::move(session_);
  r.fd = tcp_.release();
  std::exchange(done_, nullptr)(std::move(r));
}

void gateway_dialer::fail(std::error_code ec, std::string detail, bool overloaded) {
  result r;
  r.ec = ec;
  r.detail = std::move(detail);
  r.overloaded = overloaded;
  std::exchange(done_, nullptr)(std::move(r));
}

} // namespace npipe::detail
