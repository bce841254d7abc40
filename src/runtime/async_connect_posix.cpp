// SPDX-License-Identifier: MIT
// Linux async pipe, connecting: to a local pipe (connect, the hello and the
// server's reply, retries while the server is busy) and to a remote one
// (the gateway dialed, then the same handshake over TCP or TLS).
#include "runtime/async_pipe_posix_parts.hpp"

#include "core/pipe_rules.hpp"
#include "transport/client_handshake.hpp"
#include "transport/local_posix.hpp"
#include "transport/pipe_dir_posix.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(bind_executor.hpp)

#include <cstring>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace npipe::detail {
using namespace async_posix;

void async_pipe::connect(pipe_name name, client_options opts, timeout t, detail::cancellation_slot slot,
                         completion<> done) {
  auto o = connect_op(opts, conn_ != nullptr, std::move(done));
  if (!o) return;
  conn_ = std::make_unique<connecting>(net::any_io_executor(strand_));
  conn_->name = std::move(name);
  conn_->opts = std::move(opts);
  conn_->dl = deadline::after(t);
  arm(*o, forever, slot);
  conn_->o = std::move(o);
  std::error_code ec;
  if (!conn_->name.is_local()) {
    remote_connect();
    return;
  }
  if (!client_target(conn_->name, conn_->opts, conn_->target, ec)) {
    fail_connect(ec, last_error_detail());
    return;
  }
  conn_->path = conn_->target.path;
  // One timer for the whole handshake: the wait for a busy pipe is the
  // server's, so allow it a moment past our deadline to answer "busy".
  if (!conn_->dl.never()) {
    conn_->timer.expires_at(conn_->dl.at + handshake_slack);
    conn_->timer.async_wait([w = weak_from_this()](const net_error_code& ec2) {
      if (ec2) return;
      if (auto self = w.lock(); self && self->conn_) {
        self->fail_connect(err(errc::timed_out), "the server of " + self->conn_->name.str() +
                                                     (self->conn_->replying ? " did not answer the handshake in time"
                                                                            : " could not be reached in time"));
      }
    });
  }
  connect_attempt();
}

void async_pipe::connect_attempt() {
  sockaddr_un sa{};
  socklen_t len = 0;
  make_sockaddr(conn_->target.address, sa, len);
  net::generic::stream_protocol::endpoint ep(&sa, len);
  std::error_code ec;
  if (socket_.is_open()) socket_.close(into(ec));
  socket_.open(ep.protocol(), into(ec));
  if (ec) {
    fail_connect(io_error(ec), "cannot create a socket: " + ec.message());
    return;
  }
  socket_.async_connect(ep, std_errors([self = shared_from_this()](const std::error_code& e) { self->on_connect(e); }));
}

void async_pipe::on_connect(const std::error_code& ec) {
  if (!conn_) return; // cancelled or timed out meanwhile
  if (ec == net_error(net::error::try_again) && !conn_->dl.passed()) {
    // The server's accept backlog is full: rare and brief; try again shortly.
    conn_->timer.expires_after(std::chrono::milliseconds(5));
    conn_->timer.async_wait([self = shared_from_this()](const net_error_code& e) {
      if (!e && self->conn_) self->connect_attempt();
    });
    return;
  }
  if (ec) {
    auto e = connect_error(ec.value(), conn_->path);
    fail_connect(e, last_error_detail());
    return;
  }
  conn_->server = peer_of(socket_.native_handle());
  std::error_code cec;
  if (!check_server(conn_->name, conn_->opts, conn_->server, cec)) {
    fail_connect(cec, last_error_detail());
    return;
  }
  begin_hello();
}

void async_pipe::begin_hello() {
  conn_->hello = client_hello(conn_->name, conn_->opts, conn_->dl, {}, conn_->wait_ms);
  if (!conn_->dl.never()) { // re-arm: from now on the server answers, at the latest, when our wait ends
    conn_->timer.expires_at(conn_->dl.at + handshake_slack);
    conn_->timer.async_wait([w = weak_from_this()](const net_error_code& e) {
      if (e) return;
      if (auto self = w.lock(); self && self->conn_)
        self->fail_connect(err(errc::timed_out),
                           "the server of " + self->conn_->name.str() + " did not answer the handshake in time");
    });
  } else {
    conn_->timer.cancel(); // waiting forever for an instance is the caller's wish (a remote link had a bound)
  }
  conn_->replying = true;
  txbufs_.assign(1, net::buffer(conn_->hello));
  stream_.async_write(txbufs_, [self = shared_from_this()](const std::error_code& e, std::size_t) {
                      if (!self->conn_) return;
                      // A write that failed because the peer answered and
                      // hung up (a gateway saying "TLS required", a refusal)
                      // still leaves that answer to read: read it either way.
                      (void)e;
                      self->on_reply_bytes({}, 0);
                    });
}

// Remote pipes: the gateway dialed (dial.hpp: resolve, TCP, TLS), then
// npipe's handshake and framing straight over that link, as on a local pipe.
void async_pipe::remote_connect() {
  auto& c = *conn_;
  std::error_code ec;
  if (!plan_dial(c.name, c.opts, c.dl, c.plan, ec)) return fail_connect(ec, last_error_detail());
  c.path = c.plan.where; // "where", in messages
  c.timer.expires_at(c.plan.net.at);
  c.timer.async_wait([w = weak_from_this()](const net_error_code& e) {
    if (e) return;
    if (auto self = w.lock(); self && self->conn_ && !self->conn_->replying)
      self->fail_connect(err(errc::timed_out), "the gateway at " + self->conn_->path + " could not be reached in time");
  });
  dial_gateway();
}

// Takes the link down and dials the gateway again after a pause that
// doubles up to 16 ms.
void async_pipe::redial_gateway() {
  auto& c = *conn_;
  stream_.close();
  c.got = 0;
  c.replying = false;
  c.retry.expires_after(c.retry_pause);
  c.retry_pause = std::min(c.retry_pause * 2, std::chrono::milliseconds(16));
  c.retry.async_wait(net::bind_executor(strand_, [self = shared_from_this()](const net_error_code& te) {
    if (!te && self->conn_) self->dial_gateway();
  }));
}

void async_pipe::dial_gateway() {
  auto& c = *conn_;
  c.dialer = std::make_shared<gateway_dialer>(net::any_io_executor(strand_), c.plan);
  c.dialer->start([self = shared_from_this()](gateway_dialer::result r) {
    if (!self->conn_) return;
    auto& k = *self->conn_;
    if (r.ec) {
      // The gateway let this connection go to make room (it said so in
      // plaintext): a client that may wait tries again, as the blocking one does.
      if (r.overloaded && k.plan.may_retry(k.retry_pause)) return self->redial_gateway();
      return self->fail_connect(r.ec, r.detail);
    }
    std::error_code ec;
    auto& sock = self->socket_;
    if (sock.is_open()) sock.close(into(ec));
    int family = AF_INET;
    socklen_t flen = sizeof family;
    ::getsockopt(r.fd, SOL_SOCKET, SO_DOMAIN, &family, &flen);
    sock.assign(net::generic::stream_protocol(family, IPPROTO_TCP), r.fd, into(ec));
    if (ec) {
      ::close(r.fd);
      return self->fail_connect(io_error(ec), "cannot use the TCP socket");
    }
    if (r.session) self->stream_.use(std::move(r.session));
    self->peer_name_ = "the gateway at " + k.path;
    k.server = std::move(r.server);
    self->begin_hello();
  });
}

void async_pipe::on_reply_bytes(const std::error_code& ec, std::size_t n) {
  if (!conn_) return;
  auto& c = *conn_;
  if (ec) {
    fail_connect(io_error(ec),
                 "the server of " + c.name.str() + " closed the connection during the handshake");
    return;
  }
  c.got += n;
  protocol::reply rep;
  std::error_code dec;
  auto st = protocol::decode_reply(std::span(c.in.data(), c.got), rep, dec);
  if (st == protocol::decode_status::error) {
    fail_connect(dec, "the program listening at " + c.path + " does not speak npipe's protocol");
    return;
  }
  if (st == protocol::decode_status::need_more) {
    stream_.async_read_some(net::buffer(c.in.data() + c.got, c.in.size() - c.got),
                            [self = shared_from_this()](const std::error_code& e, std::size_t m) {
                              self->on_reply_bytes(e, m);
                            });
    return;
  }
  connection_params p;
  std::error_code aec;
  bool overloaded = false;
  if (!client_accepts(c.name, c.opts, rep, c.wait_ms, std::move(c.server), c.path,
                      std::span(c.in.data() + protocol::reply_size, c.got - protocol::reply_size), p, aec,
                      &overloaded)) {
    if (overloaded && c.name.is_local() && !c.dl.passed() && c.dl.remaining() >= c.retry_pause) {
      // Let go in its handshake by a server flooded with unfinished ones: a
      // client that may wait tries again, as the blocking connect does.
      c.got = 0;
      c.replying = false;
      c.timer.expires_after(c.retry_pause);
      c.retry_pause = std::min(c.retry_pause * 2, std::chrono::milliseconds(16));
      c.timer.async_wait([self = shared_from_this()](const net_error_code& e) {
        if (!e && self->conn_) self->connect_attempt();
      });
      return;
    }
    if (overloaded && !c.name.is_local() && c.plan.may_retry(c.retry_pause)) {
      // A full gateway (max_connections) said so: take this link down and dial again.
      return redial_gateway();
    }
    fail_connect(aec, last_error_detail());
    return;
  }
  auto done = std::move(conn_);
  done->timer.cancel();
  init_open(std::move(p));
  finish(*done->o, {});
}

void async_pipe::fail_connect(std::error_code ec, std::string detail) {
  auto c = std::move(conn_);
  if (!c) return;
  if (auto* s = stream_.session(); s && s->end_error()) { // a TLS link that failed says why better
    ec = s->end_error();
    detail = s->end_detail();
  }
  if (c->dialer) c->dialer->cancel();
  c->timer.cancel();
  stream_.close();
  finish(*c->o, ec, detail);
}

} // namespace npipe::detail
