// SPDX-License-Identifier: MIT
#include "runtime/async_pipe.hpp"
#include "remote/relay.hpp"
#include "remote/remote.hpp"
#include "remote/tls.hpp"

#include "core/framing.hpp"
#include "core/pipe_rules.hpp"
#include "transport/local_posix.hpp"
#include "transport/posix_util.hpp"

#include <asio/bind_executor.hpp>
#include <asio/connect.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <npipe/remote.hpp>

#include <sys/socket.h>
#include <sys/un.h>

namespace npipe::detail {
namespace {

constexpr std::size_t scratch_size = 64u << 10;   // one read's worth; per thread, not per connection
constexpr std::size_t header_read = 16u << 10;    // a first read on an idle connection asks for this much
constexpr std::size_t lookahead_limit = 4u << 20; // how far a flush reads ahead for its acknowledgement
constexpr std::size_t byte_receive = 64u << 10;   // byte read mode: most a receive returns
constexpr std::size_t max_batch = 64;             // sends gathered into one write
constexpr std::size_t acks_per_write = 256;       // flush acknowledgements gathered into one write

// A run of flush acknowledgements to write from, instead of one queued operation each.
const std::array<std::byte, acks_per_write * protocol::frame_header_size>& ack_run() {
  static const auto run = [] {
    std::array<std::byte, acks_per_write * protocol::frame_header_size> a{};
    auto one = protocol::encode_frame_header(protocol::frame_type::flush_ack, 0);
    for (std::size_t i = 0; i < acks_per_write; ++i) std::copy(one.begin(), one.end(), a.begin() + i * one.size());
    return a;
  }();
  return run;
}

std::error_code err(errc e) { return make_error_code(e); }

std::byte* scratch() {
  thread_local std::unique_ptr<std::byte[]> buf(new std::byte[scratch_size]);
  return buf.get();
}

// An Asio error as an npipe error.
std::error_code io_error(const std::error_code& ec) {
  if (ec == asio::error::eof) return err(errc::broken_pipe);
  if (ec == asio::error::operation_aborted) return err(errc::operation_aborted);
  // Asio reports OS errors in its own category ("asio.system"), not std::system_category().
  if (ec.category() == asio::error::get_system_category() || ec.category() == std::system_category())
    return errno_error(ec.value());
  return ec;
}

} // namespace

struct async_pipe::op : async_op {
  std::array<std::byte, protocol::frame_header_size> hdr{};
  std::uint64_t target = 0; // a flusher (and its flush frame): the acknowledgement it waits for
  std::uint64_t pos = 0;    // a flusher: the length of our stream before its flush frame, once written
  bool pos_known = false;
};

// What a queued send costs in memory: the operation and the payload it
// holds or points into (counted against the peer's queued-bytes cap).
std::size_t async_pipe::queued_cost(const op& o) noexcept { return sizeof(op) + o.payload.size(); }

struct async_pipe::connecting {
  pipe_name name;
  client_options opts;
  deadline dl;
  std::unique_ptr<op> o;
  std::string path;
  std::string hello;
  std::uint32_t wait_ms = 0;
  peer_identity server;
  std::vector<std::byte> in = std::vector<std::byte>(protocol::reply_size + 4096);
  std::size_t got = 0;
  asio::steady_timer timer;
  bool replying = false;
  std::chrono::milliseconds retry_pause{1}; // between attempts when the server let us go in the handshake
  asio::steady_timer retry;                 // that pause, for a remote link (timer is the deadline then)
  clock::time_point net_at;                 // remote: setting up the link ends by then
  // Remote pipes: TCP (and TLS) to the host's gateway, on the relay's strand.
  asio::strand<asio::any_io_executor> net_strand;
  std::unique_ptr<asio::ip::tcp::resolver> resolver;
  std::unique_ptr<tcp_socket> tcp;
  std::shared_ptr<tls::context> tls;
  std::unique_ptr<remote_link> link;
  explicit connecting(const asio::any_io_executor& ex) : timer(ex), retry(ex), net_strand(asio::make_strand(ex)) {}
};

async_pipe::async_pipe(const asio::any_io_executor& ex) : async_pipe_common(ex), socket_(strand_) {}

std::shared_ptr<async_pipe> async_pipe::create(const asio::any_io_executor& ex) {
  auto p = std::make_shared<async_pipe>(ex);
  runtime_registry::enroll(ex, p);
  return p;
}

async_pipe::~async_pipe() = default;

void async_pipe::abandon() noexcept {
  // The context is shutting down: no thread runs the strand now.
  readers_.clear();
  flushers_.clear();
  writes_.clear();
  conn_.reset();
}

// ---------------------------------------------------------------- operations

std::unique_ptr<async_pipe::op> async_pipe::make_op(timeout t, asio::cancellation_slot& slot) {
  auto o = std::make_unique<op>();
  o->id = next_id_++;
  arm(*o, t, slot);
  return o;
}

void async_pipe::arm(op& o, timeout t, asio::cancellation_slot& slot) { arm_op(*this, o, t, slot); }

void async_pipe::finish(op& o, std::error_code ec, const std::string& detail) { finish_op(o, ec, detail); }

// Takes the unstarted send at writes_[i] back out of the queue.
std::unique_ptr<async_pipe::op> async_pipe::withdraw_write(std::size_t i) {
  auto taken = std::move(writes_[i]);
  writes_.erase(writes_.begin() + static_cast<std::ptrdiff_t>(i));
  tx_bytes_ -= queued_cost(*taken);
  return taken;
}

// Ends operation `id` with `why`: a deadline (timed_out) or a cancellation
// (operation_aborted). A send already being written cannot be withdrawn
// without tearing its message: a deadline stops the write (on_tx completes
// it and breaks the connection if part went out); a cancellation lets it
// finish (a transact then ends as its request goes out, its reply owed).
void async_pipe::end_op(std::uint64_t id, errc why) {
  for (auto* q : {&readers_, &flushers_}) {
    for (auto it = q->begin(); it != q->end(); ++it) {
      if ((*it)->id != id) continue;
      auto o = std::move(*it);
      q->erase(it);
      // A transact that gives up after its request went out still has its
      // reply coming: it is owed, and discarded when it arrives.
      if (o->transact_reply) debt_.gave_up(false);
      finish(*o, err(why));
      return;
    }
  }
  if (conn_ && conn_->o && conn_->o->id == id) {
    // The connect has its own timer; a cancellation ends it now.
    if (why == errc::operation_aborted) fail_connect(err(why), "the connect was cancelled");
    return;
  }
  for (std::size_t i = 0; i < writes_.size(); ++i) {
    auto& o = *writes_[i];
    if (o.id != id) continue;
    if (!o.started) {
      auto taken = withdraw_write(i);
      finish(*taken, err(why));
    } else if (why == errc::timed_out) {
      o.timed_out = true;
      socket_.cancel();
    } else if (o.then_receive) {
      // A transact whose request is on its way: it ends once the request
      // is out (on_tx), and its reply is owed.
      o.cancelled = true;
    }
    return;
  }
}

void async_pipe::cancel() {
  auto rs = std::move(readers_);
  readers_.clear();
  for (auto& o : rs) {
    if (o->transact_reply) debt_.gave_up(false);
    finish(*o, err(errc::operation_aborted));
  }
  auto fs = std::move(flushers_);
  flushers_.clear();
  for (auto& o : fs) finish(*o, err(errc::operation_aborted));
  for (std::size_t i = 0; i < writes_.size();) {
    if (writes_[i]->started) {
      if (writes_[i]->then_receive) writes_[i]->cancelled = true; // ends once its request is out
      ++i;
      continue;
    }
    auto taken = withdraw_write(i);
    if (taken->on_sent || taken->then_receive) finish(*taken, err(errc::operation_aborted));
  }
  if (conn_) fail_connect(err(errc::operation_aborted), "the connect was cancelled");
}

bool async_pipe::quiet() const noexcept {
  return writes_.empty() && inbox_head_ == inbox_.size() && !rd_.mid_frame();
}

// ------------------------------------------------------------------- opening

void async_pipe::init_open(connection_params p) {
  p_ = std::move(p);
  mode_.store(p_.mode, std::memory_order_relaxed);
  std::error_code ignore;
  socket_.non_blocking(true, ignore);
  open_.store(true, std::memory_order_release);
  touch();
  tx_offset_ = p_.sent_before;
  rd_ = framing::reader(p_.max_message);
  if (!p_.initial.empty()) {
    auto initial = std::move(p_.initial);
    p_.initial = {};
    parse(initial.data(), initial.size());
  }
  kick();
}

bool async_pipe::adopt(std::intptr_t fd, connection_params p, std::error_code& ec) {
  int family = AF_UNIX;
  socket_.assign(asio::generic::stream_protocol(family, 0), static_cast<int>(fd), ec);
  if (ec) {
    ::close(static_cast<int>(fd));
    ec = io_error(ec);
    if (p.on_close) p.on_close();
    return false;
  }
  init_open(std::move(p));
  return true;
}

void async_pipe::connect(pipe_name name, client_options opts, timeout t, asio::cancellation_slot slot,
                         completion<> done) {
  auto o = std::make_unique<op>();
  o->id = next_id_++;
  o->on_done = std::move(done);
  if (open_ || conn_ || closed_) {
    finish(*o, err(errc::invalid_state), closed_ ? "this connection object was closed; make a new one"
                                                 : "this connection is already open or connecting");
    return;
  }
  if (std::error_code oec; !check_client_options(opts, oec)) {
    finish(*o, oec, last_error_detail());
    return;
  }
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
  if (!client_path(conn_->name, conn_->opts, conn_->path, ec)) {
    fail_connect(ec, last_error_detail());
    return;
  }
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
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, conn_->path.data(), conn_->path.size());
  auto len = static_cast<std::size_t>(offsetof(sockaddr_un, sun_path) + conn_->path.size() + 1);
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

// ----------------------------------------------------------------- receiving

bool async_pipe::inbox_has_data() const noexcept { return inbox_messages_ > 0; }

void async_pipe::pop_front_msg() {
  inbox_bytes_ -= inbox_[inbox_head_].data.size();
  if (!inbox_[inbox_head_].flushes) --inbox_messages_;
  inbox_[inbox_head_] = {};
  if (++inbox_head_ == inbox_.size()) {
    inbox_head_ = 0;
    inbox_.clear();
    if (inbox_.capacity() > 64) inbox_.shrink_to_fit();
  }
}

void async_pipe::ack_leading_flushes() {
  while (inbox_head_ < inbox_.size() && inbox_[inbox_head_].flushes) {
    std::size_t n = inbox_[inbox_head_].flushes;
    pop_front_msg();
    if (!tx_broken_ && !closed_) {
      acks_owed_ += n; // a count, not queued operations: a peer that floods flushes costs no memory
      start_tx();
    }
  }
}

std::vector<std::byte> async_pipe::take_message() {
  auto& m = inbox_[inbox_head_];
  std::vector<std::byte> out = std::move(m.data);
  if (m.off) out.erase(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(m.off));
  inbox_bytes_ -= m.off; // pop_front_msg subtracts the (now moved-out) size
  inbox_bytes_ -= out.size();
  m.data = {};
  pop_front_msg();
  return out;
}

std::size_t async_pipe::take_bytes(std::byte* out, std::size_t n, bool one_message, bool& more) {
  std::size_t got = 0;
  more = false;
  while (inbox_head_ < inbox_.size()) {
    auto& m = inbox_[inbox_head_];
    if (m.flushes) {
      if (one_message && got > 0) break;
      ack_leading_flushes();
      continue;
    }
    std::size_t c = std::min(n - got, m.data.size() - m.off);
    if (c) std::memcpy(out + got, m.data.data() + m.off, c);
    got += c;
    m.off += c;
    if (m.off < m.data.size()) {
      more = one_message;
      break;
    }
    pop_front_msg();
    if (one_message || got == n) break;
  }
  return got;
}

std::error_code async_pipe::rx_state_error(std::string& detail) const {
  if (rx_err_) {
    detail = rx_detail_;
    return rx_err_;
  }
  if (eof_) {
    detail = rd_.mid_frame() ? "the peer closed the pipe in the middle of a message"
                                       : "the peer closed the pipe";
    return err(errc::broken_pipe);
  }
  if (!is_open()) {
    detail = "the pipe is closed";
    return err(errc::not_connected);
  }
  return {};
}

// Discards the replies owed to transacts that gave up, as far as they have
// arrived (whole messages: they are read ahead like any other).
void async_pipe::settle_debt() {
  while (debt_.owed > 0) {
    ack_leading_flushes();
    if (!inbox_has_data()) return;
    take_message();
    --debt_.owed;
  }
  ack_leading_flushes();
}

// Satisfies the reader if it can; true when it completed (and was removed).
bool async_pipe::serve_reader(op& o) {
  settle_debt();
  const bool msg_mode = mode() == npipe::read_mode::message;
  if (!inbox_has_data()) {
    std::string detail;
    if (auto ec = rx_state_error(detail)) {
      finish(o, ec, detail);
      return true;
    }
    return false;
  }
  if (!msg_mode) top_up(o.on_msg ? byte_receive : o.buf.size());
  touch();
  receipts_.data_taken();
  if (o.on_msg) {
    std::vector<std::byte> out;
    if (msg_mode) {
      out = take_message();
    } else {
      out.resize(byte_receive);
      bool more = false;
      out.resize(take_bytes(out.data(), out.size(), false, more));
    }
    ack_leading_flushes();
    if (o.timer) o.timer->cancel();
    std::exchange(o.on_msg, nullptr)({}, std::move(out));
    return true;
  }
  bool more = false;
  read_result r;
  r.bytes = take_bytes(static_cast<std::byte*>(o.buf.data()), o.buf.size(), msg_mode, more);
  r.more_data = more;
  if (!more) ack_leading_flushes();
  if (o.timer) o.timer->cancel();
  std::exchange(o.on_some, nullptr)({}, r);
  return true;
}

void async_pipe::deliver() {
  while (!readers_.empty()) {
    auto o = std::move(readers_.front());
    readers_.erase(readers_.begin());
    if (!serve_reader(*o)) {
      readers_.insert(readers_.begin(), std::move(o));
      break;
    }
  }
  ack_leading_flushes();
  // A remote peer learns that all it sent has been consumed without waiting
  // for our next call (its flush needs that; over a network nothing else can
  // tell it): one consumed frame, once the application has taken everything.
  // Only data consumed calls for one: a receipt for the peer's receipts
  // would call for another, and so on.
  const bool caught_up = inbox_head_ == inbox_.size() && !rd_.mid_frame() && !eof_ && !rx_err_;
  if (auto due = receipts_.due(p_.peer.is_remote(), caught_up, rd_.offset())) {
    receipt_due_ = *due;
    receipts_.sent(*due);
  }
  start_tx(); // acknowledgements (and a receipt) owed since the last write
  // Flushers whose acknowledgement has arrived; or that cannot get one.
  for (std::size_t i = 0; i < flushers_.size();) {
    auto& f = *flushers_[i];
    std::error_code ec;
    std::string detail;
    if (flushes_.answered(f.target, f.pos_known ? std::optional(f.pos) : std::nullopt)) {
    } else if ((ec = rx_state_error(detail))) {
    } else if (inbox_bytes_ >= lookahead_limit) {
      ec = err(errc::invalid_state);
      detail = "flush cannot see the peer's acknowledgement behind " + std::to_string(inbox_bytes_) +
               " unread bytes; receive them first";
    } else {
      ++i;
      continue;
    }
    auto taken = std::move(flushers_[i]);
    flushers_.erase(flushers_.begin() + static_cast<std::ptrdiff_t>(i));
    finish(*taken, ec, detail);
  }
}

void async_pipe::kick() {
  if (in_kick_) {
    kick_again_ = true;
    return;
  }
  in_kick_ = true;
  do {
    kick_again_ = false;
    deliver();
    if (rx_wanted()) start_rx();
  } while (kick_again_);
  in_kick_ = false;
}

bool async_pipe::rx_wanted() const noexcept {
  if (!is_open() || eof_ || rx_err_ || rx_active_) return false;
  // A peer that sends flushes but does not read our acknowledgements is not
  // read any further until it does: what it can make us owe stays bounded.
  if (acks_owed_ * framing::control_frame_cost >= p_.max_queued) return false;
  if (rd_.in_data() || !inbox_has_data()) return true; // a message begun is read to its end
  return !flushers_.empty() && inbox_bytes_ < lookahead_limit;
}

void async_pipe::start_rx() {
  rx_active_ = true;
  // Always a readiness wait, never a read into a buffer sized in advance: a
  // large frame's buffer grows only once its bytes are there to read.
  socket_.async_wait(asio::socket_base::wait_read,
                     [self = shared_from_this()](const std::error_code& ec) { self->on_readable(ec); });
}

void async_pipe::on_readable(const std::error_code& ec) {
  rx_active_ = false;
  if (closed_) return;
  if (ec) {
    if (ec != asio::error::operation_aborted) rx_fail(io_error(ec), "reading the pipe failed: " + ec.message());
    kick();
    return;
  }
  pull();
  kick();
}

void async_pipe::pull() {
  try {
    read_available();
  } catch (const std::bad_alloc&) {
    // An allocation this peer caused failed: it ends this connection only.
    rx_fail(no_memory_error(), "out of memory receiving from the peer; the connection is closed");
  }
}

// Byte read mode returns everything the pipe holds, as ReadFile does, not
// just the messages the inbox happens to hold: what the kernel has is read
// (without waiting) until the inbox holds what the reader can take. Reading
// stops at the reader's size, so what a peer can make us hold is unchanged.
void async_pipe::top_up(std::size_t want) {
  auto held = [this] { return inbox_bytes_ - (inbox_head_ < inbox_.size() ? inbox_[inbox_head_].off : 0); };
  while (held() < want && !eof_ && !rx_err_ && is_open()) {
    auto before = rd_.offset();
    pull();
    if (rd_.offset() == before) return;
  }
}

void async_pipe::read_available() {
  std::byte* buf = scratch();
  for (int rounds = 0; rounds < 4; ++rounds) {
    std::error_code rec;
    if (rd_.in_data() && msg_got_ < msg_.size()) {
      // The rest of a message goes straight into it, without a trip back
      // through the reactor while the kernel has more of it; its buffer has
      // grown only with what arrived (framing::room_for).
      std::size_t n = socket_.read_some(asio::buffer(msg_.data() + msg_got_, msg_.size() - msg_got_), rec);
      if (rec == asio::error::would_block || rec == asio::error::try_again) break;
      if (rec) {
        if (rec == asio::error::eof) eof_ = true;
        else rx_fail(io_error(rec), "reading the pipe failed: " + rec.message());
        break;
      }
      touch();
      msg_got_ += n;
      rd_.took(n);
      if (rd_.left() > 0) continue;
      end_message();
      break;
    }
    // With nothing pending, a modest first read: if a large frame follows,
    // the rest of it then lands in its message without passing through here.
    std::size_t want = rounds == 0 && !rd_.mid_frame() ? header_read : scratch_size;
    if (rd_.in_data()) want = std::min<std::size_t>(want, rd_.left()); // its buffer is full: grow by what is here
    std::size_t n = socket_.read_some(asio::buffer(buf, want), rec);
    if (rec == asio::error::would_block || rec == asio::error::try_again) break;
    if (rec == asio::error::eof) {
      eof_ = true;
      break;
    }
    if (rec) {
      rx_fail(io_error(rec), "reading the pipe failed: " + rec.message());
      break;
    }
    touch();
    parse(buf, n);
    if (inbox_has_data() || (n < want && !rd_.in_data())) break;
  }
}

// Takes the peer's bytes: control frames act at once, data frames become
// inbox messages. A header alone commits nothing: a message's buffer grows
// with its payload as it arrives.
void async_pipe::parse(const std::byte* data, std::size_t n) {
  std::size_t pos = 0;
  while (pos < n) {
    if (rd_.in_data()) {
      std::size_t c = std::min<std::size_t>(rd_.left(), n - pos);
      if (msg_got_ + c > msg_.size()) msg_.resize(framing::room_for(msg_got_ + c, msg_got_ + rd_.left()));
      std::memcpy(msg_.data() + msg_got_, data + pos, c);
      msg_got_ += c;
      rd_.took(c);
      pos += c;
      if (rd_.left() == 0) end_message();
      continue;
    }
    auto s = rd_.next(std::span(data + pos, n - pos));
    pos += s.used;
    switch (s.what) {
    case framing::event::need_more: return;
    case framing::event::error: rx_fail(rd_.error(), rd_.error_detail()); return;
    case framing::event::flush_ack: flushes_.acked(); break;
    case framing::event::consumed: flushes_.consumed(s.consumed); break;
    case framing::event::flush:
      // Flushes in a row are one marker; with nothing unread before them
      // they are owed at once.
      if (inbox_head_ == inbox_.size()) ++acks_owed_;
      else if (inbox_.back().flushes) ++inbox_.back().flushes;
      else inbox_.push_back({{}, 0, 1});
      break;
    case framing::event::data:
      msg_got_ = 0;
      if (s.length == 0) end_message();
      break;
    }
  }
}

// The current message is whole: into the inbox.
void async_pipe::end_message() {
  msg_.resize(msg_got_);
  inbox_bytes_ += msg_.size();
  inbox_.push_back({std::move(msg_), 0, 0});
  ++inbox_messages_;
  msg_ = {};
  msg_got_ = 0;
  rd_.end_data();
}

void async_pipe::rx_fail(std::error_code ec, std::string detail) {
  if (rx_err_) return;
  rx_err_ = ec;
  rx_detail_ = std::move(detail);
  broken_.store(true, std::memory_order_release);
  std::error_code ignore;
  socket_.shutdown(asio::socket_base::shutdown_both, ignore); // the stream cannot be resynchronised; tell the peer
}

void async_pipe::receive(timeout t, asio::cancellation_slot slot, completion<std::vector<std::byte>> done) {
  auto o = make_op(t, slot);
  o->on_msg = std::move(done);
  readers_.push_back(std::move(o));
  kick();
}

void async_pipe::read_some(asio::mutable_buffer buf, timeout t, asio::cancellation_slot slot,
                           completion<read_result> done) {
  auto o = make_op(t, slot);
  o->on_some = std::move(done);
  o->buf = buf;
  readers_.push_back(std::move(o));
  kick();
}

// ------------------------------------------------------------------- sending

void async_pipe::queue_frame(protocol::frame_type t, std::unique_ptr<op> o) {
  if (!o) {
    o = std::make_unique<op>();
    o->id = next_id_++;
  }
  std::size_t len = o->payload.size(); // `owned`, if used, is what payload points into
  o->hdr = protocol::encode_frame_header(t, static_cast<std::uint32_t>(len));
  tx_bytes_ += queued_cost(*o);
  writes_.push_back(std::move(o));
  start_tx();
}

void async_pipe::start_tx() {
  if (tx_active_ || (writes_.empty() && acks_owed_ == 0 && receipt_due_ == 0) || closed_ || tx_broken_)
    return;
  txbufs_.clear();
  // Acknowledgements first: they are whole frames, and the peer counts them
  // wherever they fall between our frames.
  tx_acks_ = std::min(acks_owed_, acks_per_write);
  if (tx_acks_) txbufs_.push_back(asio::buffer(ack_run().data(), tx_acks_ * protocol::frame_header_size));
  tx_receipt_ = std::exchange(receipt_due_, 0);
  if (tx_receipt_) {
    receipt_frame_ = protocol::encode_consumed(tx_receipt_);
    txbufs_.push_back(asio::buffer(receipt_frame_));
  }
  tx_batch_ = std::min(writes_.size(), max_batch);
  for (std::size_t i = 0; i < tx_batch_; ++i) {
    auto& o = *writes_[i];
    o.started = true;
    txbufs_.push_back(asio::buffer(o.hdr));
    if (o.payload.size()) txbufs_.push_back(o.payload);
  }
  tx_active_ = true;
  asio::async_write(socket_, txbufs_, [self = shared_from_this()](const std::error_code& ec, std::size_t n) {
    self->on_tx(ec, n);
  });
}

void async_pipe::on_tx(const std::error_code& ec, std::size_t n) {
  tx_active_ = false;
  std::vector<std::unique_ptr<op>> batch(std::make_move_iterator(writes_.begin()),
                                         std::make_move_iterator(writes_.begin() + static_cast<std::ptrdiff_t>(tx_batch_)));
  writes_.erase(writes_.begin(), writes_.begin() + static_cast<std::ptrdiff_t>(tx_batch_));
  for (auto& o : batch) tx_bytes_ -= queued_cost(*o);
  if (ec && n == 0 && !closed_ && ec == asio::error::operation_aborted) {
    // A timed-out send stopped the write before any byte went: nothing is
    // torn. Complete the timed-out ones; put the rest (and a receipt) back.
    receipt_due_ = std::max(receipt_due_, tx_receipt_);
    std::vector<std::unique_ptr<op>> back;
    for (auto& o : batch) {
      if (o->timed_out) finish(*o, err(errc::timed_out));
      else {
        o->started = false;
        tx_bytes_ += queued_cost(*o);
        back.push_back(std::move(o));
      }
    }
    writes_.insert(writes_.begin(), std::make_move_iterator(back.begin()), std::make_move_iterator(back.end()));
    start_tx();
    return;
  }
  if (ec) {
    // Part of a message may have gone: the stream is torn, this end is done sending.
    auto e = closed_ ? err(errc::operation_aborted) : io_error(ec);
    std::string detail = closed_ ? "the pipe was closed" : "writing to the pipe failed: " + ec.message();
    tx_broken_ = true;
    broken_.store(true, std::memory_order_release);
    for (auto& o : batch) finish(*o, o->timed_out ? err(errc::timed_out) : e, detail);
    fail_writes(e, detail);
    if (!closed_) {
      std::error_code ignore;
      socket_.shutdown(asio::socket_base::shutdown_send, ignore);
    }
    kick();
    return;
  }
  touch();
  acks_owed_ -= tx_acks_;
  // Where each frame went in our stream: flushers learn where theirs was.
  std::uint64_t at = tx_offset_ + tx_acks_ * protocol::frame_header_size;
  if (tx_receipt_) at += receipt_frame_.size();
  for (auto& o : batch) {
    if (o->hdr[0] == static_cast<std::byte>(protocol::frame_type::flush))
      for (auto& f : flushers_)
        if (f->target == o->target) {
          f->pos = at;
          f->pos_known = true;
        }
    at += o->hdr.size() + o->payload.size();
  }
  tx_offset_ = at;
  for (auto& o : batch) {
    if (o->timer) o->timer->cancel();
    if (o->then_receive && o->cancelled) { // cancelled while its request went out: the reply is owed
      debt_.gave_up(false);
      finish(*o, err(errc::operation_aborted));
    } else if (o->then_receive) { // transact: the request is out; now its reply
      auto r = std::make_unique<op>();
      r->id = o->id;
      r->timer = std::move(o->timer);
      r->on_msg = std::move(o->then_receive);
      r->transact_reply = true;
      if (r->timer) start_deadline(*this, *r, r->timer->expiry()); // the transact's deadline goes on
      readers_.push_back(std::move(r));
    } else if (o->on_sent) {
      std::exchange(o->on_sent, nullptr)({}, o->payload.size());
    }
  }
  start_tx();
  kick();
}

void async_pipe::fail_writes(std::error_code ec, const std::string& detail) {
  auto rest = std::move(writes_);
  writes_.clear();
  tx_bytes_ = 0;
  acks_owed_ = 0;
  for (auto& o : rest) finish(*o, ec, detail);
  auto fs = std::move(flushers_);
  flushers_.clear();
  for (auto& o : fs) finish(*o, ec, detail);
}

void async_pipe::send(asio::const_buffer msg, std::vector<std::byte> owned, timeout t, asio::cancellation_slot slot,
                      completion<std::size_t> done) {
  auto o = make_op(t, slot);
  o->on_sent = std::move(done);
  std::size_t size = owned.empty() ? msg.size() : owned.size();
  if (!is_open() || tx_broken_) {
    finish(*o, err(is_open() ? errc::broken_pipe : errc::not_connected),
           is_open() ? "an earlier send failed part-way; this connection cannot send any more" : "the pipe is not open");
    return;
  }
  std::string detail;
  if (auto e = framing::check_send(p_.type, size, p_.peer_max_message, detail)) {
    finish(*o, e, detail);
    return;
  }
  // Message pipes: one frame. Byte pipes: frames of at most byte_chunk (and
  // the peer's limit), the last one carrying the completion; no bytes, no frame.
  const std::byte* base = owned.empty() ? static_cast<const std::byte*>(msg.data()) : owned.data();
  framing::frame_cuts cuts(p_.type, std::span(base, size), p_.peer_max_message);
  std::span<const std::byte> part;
  if (!cuts.next(part)) {
    finish(*o, {});
    return;
  }
  for (bool more = true; more;) {
    std::span<const std::byte> next;
    more = cuts.next(next);
    std::unique_ptr<op> frame;
    if (!more) {
      frame = std::move(o);
      // The last frame keeps `owned` alive; moving a vector keeps its
      // storage, so the earlier frames (written first) still point into it.
      frame->owned = std::move(owned);
    } else {
      frame = std::make_unique<op>();
      frame->id = next_id_++;
    }
    frame->payload = asio::buffer(part.data(), part.size());
    queue_frame(protocol::frame_type::data, std::move(frame));
    part = next;
  }
}

void async_pipe::transact(std::vector<std::byte> request, timeout t, asio::cancellation_slot slot,
                          completion<std::vector<std::byte>> done) {
  auto o = make_op(t, slot);
  if (!is_open()) {
    o->on_msg = std::move(done);
    finish(*o, err(errc::not_connected), "the pipe is not open");
    return;
  }
  if (auto why = pipe_rules::transact_refusal(p_.type, mode(), false)) {
    o->on_msg = std::move(done);
    finish(*o, err(errc::invalid_state), why);
    return;
  }
  // Replies owed to transacts that gave up do not count as unread: they
  // are discarded as they come, ahead of this one's.
  settle_debt();
  // A message begun on the wire (a data header, whole or in part) is unread too.
  std::size_t unread = inbox_messages_ + (rd_.in_data() || rd_.holds_data_start() ? 1 : 0);
  if (auto why = pipe_rules::transact_refusal(p_.type, mode(), unread > debt_.owed || !readers_.empty())) {
    o->on_msg = std::move(done);
    finish(*o, err(errc::invalid_state), why);
    return;
  }
  std::string detail;
  auto too_large = framing::check_send(p_.type, request.size(), p_.peer_max_message, detail);
  if (tx_broken_ || too_large) {
    o->on_msg = std::move(done);
    finish(*o, tx_broken_ ? err(errc::broken_pipe) : too_large,
           tx_broken_ ? "an earlier send failed part-way; this connection cannot send any more" : detail);
    return;
  }
  o->then_receive = std::move(done);
  o->owned = std::move(request);
  o->payload = asio::buffer(o->owned);
  queue_frame(protocol::frame_type::data, std::move(o));
}

void async_pipe::flush(timeout t, asio::cancellation_slot slot, completion<> done) {
  auto o = make_op(t, slot);
  o->on_done = std::move(done);
  if (!is_open() || tx_broken_) {
    finish(*o, err(is_open() ? errc::broken_pipe : errc::not_connected), "the pipe cannot send");
    return;
  }
  if (writes_.empty() && !p_.peer.is_remote() && peer_took_everything(socket_.native_handle())) {
    finish(*o, {});
    return;
  }
  o->target = flushes_.issue();
  auto marker = std::make_unique<op>();
  marker->id = next_id_++;
  marker->target = o->target; // on_tx tells the flusher where in our stream its frame went
  flushers_.push_back(std::move(o));
  queue_frame(protocol::frame_type::flush, std::move(marker));
  kick();
}

// ------------------------------------------------------------------- closing

void async_pipe::close(std::error_code why, std::string detail) {
  if (closed_) return;
  if (conn_) fail_connect(why, detail.empty() ? "the connection was closed" : detail);
  if (is_open() && writes_.empty() && !tx_active_ && !rd_.in_data() && !tx_broken_) {
    // Acknowledge flushes the application has satisfied, so the peer's
    // flush() succeeds instead of breaking (as the blocking end does).
    if (!rx_active_ && !eof_ && !rx_err_ && !inbox_has_data()) {
      std::error_code rec;
      std::size_t n = socket_.read_some(asio::buffer(scratch(), scratch_size), rec);
      try {
        if (!rec) parse(scratch(), n);
      } catch (const std::bad_alloc&) {
      }
    }
    std::size_t acks = acks_owed_;
    for (std::size_t i = inbox_head_; i < inbox_.size() && inbox_[i].flushes; ++i) acks += inbox_[i].flushes;
    acks = std::min(acks, acks_per_write); // a best effort that never blocks
    ::send(socket_.native_handle(), ack_run().data(), acks * protocol::frame_header_size, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  closed_ = true;
  open_.store(false, std::memory_order_release);
  if (detail.empty()) detail = "the pipe was closed";
  auto rs = std::move(readers_);
  readers_.clear();
  for (auto& o : rs) finish(*o, why, detail);
  auto fs = std::move(flushers_);
  flushers_.clear();
  for (auto& o : fs) finish(*o, why, detail);
  // Sends not yet started end now; the one being written ends in on_tx.
  for (std::size_t i = 0; i < writes_.size();) {
    if (writes_[i]->started) {
      ++i;
      continue;
    }
    auto o = withdraw_write(i);
    finish(*o, why, detail);
  }
  std::error_code ignore;
  socket_.shutdown(asio::socket_base::shutdown_both, ignore);
  socket_.close(ignore);
  inbox_.clear();
  inbox_.shrink_to_fit();
  inbox_head_ = 0;
  inbox_messages_ = 0;
  msg_ = {};
  if (p_.on_close) std::exchange(p_.on_close, nullptr)();
  if (on_closed) std::exchange(on_closed, nullptr)();
}

} // namespace npipe::detail
