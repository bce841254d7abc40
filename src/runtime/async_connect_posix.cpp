// SPDX-License-Identifier: MIT
// Linux async pipe, connecting: to a local pipe (connect, the hello and the
// server's reply, retries while the server is busy) and to a remote one
// (resolve, TCP, TLS, then the relay's socketpair).
#include "runtime/async_pipe_posix_parts.hpp"
#include "remote/remote.hpp"

#include "core/pipe_rules.hpp"
#include "transport/client_handshake.hpp"
#include "transport/local_posix.hpp"
#include "transport/pipe_dir_posix.hpp"

#include <asio/bind_executor.hpp>
#include <asio/connect.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <npipe/remote.hpp>

#include <cstring>

#include <sys/socket.h>
#include <sys/un.h>

namespace npipe::detail {
using namespace async_posix;

void async_pipe::connect(pipe_name name, client_options opts, timeout t, asio::cancellation_slot slot,
                         completion<> done) {
  auto o = connect_op(opts, conn_ != nullptr, std::move(done));
  if (!o) return;
  conn_ = std::make_unique<connecting>(asio::any_io_executor(strand_));
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
    conn_->timer.async_wait([w = weak_from_this()](const std::error_code& ec2) {
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
  asio::generic::stream_protocol::endpoint ep(&sa, len);
  std::error_code ec;
  if (socket_.is_open()) socket_.close(ec);
  socket_.open(ep.protocol(), ec);
  if (ec) {
    fail_connect(io_error(ec), "cannot create a socket: " + ec.message());
    return;
  }
  socket_.async_connect(ep, [self = shared_from_this()](const std::error_code& e) { self->on_connect(e); });
}

void async_pipe::on_connect(const std::error_code& ec) {
  if (!conn_) return; // cancelled or timed out meanwhile
  if (ec == asio::error::try_again && !conn_->dl.passed()) {
    // The server's accept backlog is full: rare and brief; try again shortly.
    conn_->timer.expires_after(std::chrono::milliseconds(5));
    conn_->timer.async_wait([self = shared_from_this()](const std::error_code& e) {
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
    conn_->timer.async_wait([w = weak_from_this()](const std::error_code& e) {
      if (e) return;
      if (auto self = w.lock(); self && self->conn_)
        self->fail_connect(err(errc::timed_out),
                           "the server of " + self->conn_->name.str() + " did not answer the handshake in time");
    });
  } else {
    conn_->timer.cancel(); // waiting forever for an instance is the caller's wish (a remote link had a bound)
  }
  conn_->replying = true;
  asio::async_write(socket_, asio::buffer(conn_->hello),
                    [self = shared_from_this()](const std::error_code& e, std::size_t) {
                      if (!self->conn_) return;
                      // A write that failed because the peer answered and
                      // hung up (a gateway saying "TLS required", a refusal)
                      // still leaves that answer to read: read it either way.
                      (void)e;
                      self->on_reply_bytes({}, 0);
                    });
}

// Remote pipes: resolve, TCP, TLS, then a relay between the TLS link and
// one end of a socketpair; this pipe runs npipe's handshake and framing over
// the other end, exactly as on a local pipe.
void async_pipe::remote_connect() {
  auto& c = *conn_;
  std::error_code ec;
  if (!tls::check_options(tls::role::client, c.opts.tls, ec)) return fail_connect(ec, last_error_detail());
  if (!c.opts.tls.insecure) {
    c.tls = tls::context::make(tls::role::client, c.opts.tls, ec);
    if (!c.tls) return fail_connect(ec, last_error_detail());
  }
  std::uint16_t port = c.name.port() ? c.name.port() : default_remote_port;
  c.path = endpoint_text(c.name.host(), port); // "where", in messages
  // The caller's timeout is the wait for an instance; setting up the link
  // gets at least handshake_slack on top, and a bound when the caller waits
  // forever (as the blocking client).
  c.net_at = c.dl.never() ? clock::now() + defaults::handshake_timeout
                          : std::max(c.dl.at, clock::now() + handshake_slack);
  c.timer.expires_at(c.net_at);
  c.timer.async_wait([w = weak_from_this()](const std::error_code& e) {
    if (e) return;
    if (auto self = w.lock(); self && self->conn_ && !self->conn_->replying)
      self->fail_connect(err(errc::timed_out), "the gateway at " + self->conn_->path + " could not be reached in time");
  });
  dial_gateway();
}

// Takes the remote link down (and the relay and socket pair, if set up) and
// dials the gateway again after a pause that doubles up to 16 ms.
void async_pipe::redial_gateway() {
  auto& c = *conn_;
  if (relay_) {
    asio::dispatch(c.net_strand, [r = relay_] { r->close("the gateway was full; trying again"); });
    relay_.reset();
  }
  std::error_code ignore;
  socket_.close(ignore);
  c.got = 0;
  c.replying = false;
  c.link.reset();
  c.retry.expires_after(c.retry_pause);
  c.retry_pause = std::min(c.retry_pause * 2, std::chrono::milliseconds(16));
  c.retry.async_wait(asio::bind_executor(strand_, [self = shared_from_this()](const std::error_code& te) {
    if (!te && self->conn_) self->dial_gateway();
  }));
}

void async_pipe::dial_gateway() {
  auto& c = *conn_;
  std::uint16_t port = c.name.port() ? c.name.port() : default_remote_port;
  c.resolver = std::make_unique<asio::ip::tcp::resolver>(c.net_strand);
  c.resolver->async_resolve(
      c.name.host(), std::to_string(port),
      asio::bind_executor(strand_, [self = shared_from_this()](const std::error_code& e,
                                                               asio::ip::tcp::resolver::results_type results) {
        if (!self->conn_) return;
        auto& k = *self->conn_;
        if (e) {
          set_error_detail("cannot resolve " + k.name.host() + ": " + e.message());
          return self->fail_connect(err(errc::not_found), last_error_detail());
        }
        k.tcp = std::make_unique<tcp_socket>(k.net_strand);
        asio::async_connect(*k.tcp, results,
                            asio::bind_executor(self->strand_, [self](const std::error_code& ce, const auto&) {
                              self->on_tcp_connect(ce);
                            }));
      }));
}

void async_pipe::on_tcp_connect(const std::error_code& ec) {
  if (!conn_) return;
  auto& c = *conn_;
  if (ec) {
    if (ec == asio::error::connection_refused)
      return fail_connect(err(errc::not_found),
                          "nothing listens on " + c.path + " (is an npipe gateway running there, on this port?)");
    return fail_connect(io_error(ec), "cannot reach " + c.path + ": " + ec.message());
  }
  tune_tcp(c.tcp->native_handle());
  c.link = std::make_unique<remote_link>(std::move(*c.tcp), "the gateway at " + c.path);
  if (!c.tls) {
    c.server = peer_identity{-1, -1, -1, "insecure", c.path, {}};
    return bridge();
  }
  std::error_code sec;
  if (!c.link->session.start_client(*c.tls, c.name.host(), sec)) return fail_connect(sec, last_error_detail());
  tls_step();
}

void async_pipe::tls_step() {
  auto& c = *conn_;
  tls::session& s = c.link->session;
  tls::io r = s.handshake();
  if (r == tls::io::end) {
    bool overloaded = s.plaintext_answer() == protocol::status::overloaded;
    if (overloaded && (c.dl.never() || !c.dl.passed()) && clock::now() + c.retry_pause < c.net_at) {
      // The gateway let this connection go to make room (it said so in
      // plaintext): a client that may wait tries again, as the blocking one does.
      return redial_gateway();
    }
    return fail_connect(s.end_error(), s.end_detail());
  }
  if (r != tls::io::done) {
    c.link->wait(r, asio::bind_executor(strand_, [self = shared_from_this()](const std::error_code& e) {
                   if (!self->conn_) return;
                   if (e) return self->fail_connect(io_error(e), "the TLS handshake was interrupted");
                   self->tls_step();
                 }));
    return;
  }
  std::error_code ec;
  std::string who;
  if (!tls::peer_identity_of(s.native(), *c.tls, who, ec)) return fail_connect(ec, last_error_detail());
  c.server = peer_identity{-1, -1, -1, std::move(who), c.path, {}};
  bridge();
}

void async_pipe::bridge() {
  auto& c = *conn_;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    auto e = errno_error(errno);
    return fail_connect(e, "cannot make a socket pair for the remote link");
  }
  std::error_code ec;
  unix_socket near(c.net_strand);
  near.assign(asio::local::stream_protocol(), sv[1], ec);
  if (socket_.is_open()) socket_.close(ec);
  socket_.assign(asio::generic::stream_protocol(AF_UNIX, 0), sv[0], ec);
  if (ec) {
    ::close(sv[0]);
    return fail_connect(io_error(ec), "cannot use the socket pair");
  }
  relay_ = std::make_shared<relay>(std::move(c.link), std::move(near), forever,
                                   relay::sides{"the gateway at " + c.path, "this end"});
  asio::dispatch(c.net_strand, [r = relay_] { r->start(); });
  begin_hello();
}

void async_pipe::on_reply_bytes(const std::error_code& ec, std::size_t n) {
  if (!conn_) return;
  auto& c = *conn_;
  if (ec) {
    fail_connect(ec == asio::error::eof ? err(errc::broken_pipe) : io_error(ec),
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
    socket_.async_read_some(asio::buffer(c.in.data() + c.got, c.in.size() - c.got),
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
      c.timer.async_wait([self = shared_from_this()](const std::error_code& e) {
        if (!e && self->conn_) self->connect_attempt();
      });
      return;
    }
    if (overloaded && !c.name.is_local() &&
        (c.dl.never() ? clock::now() + c.retry_pause < c.net_at : clock::now() + c.retry_pause < c.dl.at)) {
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
  if (relay_) { // a remote link that failed says why better than the end of stream it caused here
    auto [rec, rdetail] = relay_->end_reason();
    if (rec) {
      ec = rec;
      detail = std::move(rdetail);
    }
  }
  c->timer.cancel();
  std::error_code ignore;
  socket_.close(ignore);
  finish(*c->o, ec, detail);
}

} // namespace npipe::detail
