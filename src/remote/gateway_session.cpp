// SPDX-License-Identifier: MIT
// One remote client at the gateway, from TCP accept to the hand-over to its
// relay: the first byte (TLS or a plaintext hello), the handshake, the move
// to the authenticated budget, the hello and its checks (exported, a server
// of the gateway's own user), and the answers that refuse or drop it.

#include "remote/gateway_session.hpp"

#include "core/protocol.hpp"
#include "remote/relay.hpp"
#include "remote/tls.hpp"
#include "transport/local_posix.hpp"
#include "transport/posix_util.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(buffer.hpp)
#include NPIPE_NET_HEADER(ip/tcp.hpp)
#include NPIPE_NET_HEADER(local/stream_protocol.hpp)
#include NPIPE_NET_HEADER(write.hpp)

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace npipe::detail {

namespace {

using tcp = net::ip::tcp;

// The largest hello a client may send: fixed part, name, and a pipelined
// first request (CallNamedPipe style) with its frame header.
constexpr std::size_t max_hello_bytes =
    protocol::hello_fixed_size + protocol::max_name_bytes + protocol::frame_header_size + pipelined_request_max;

const char* refusal_text(protocol::status st) {
  switch (st) {
  case protocol::status::busy: return "the server said busy";
  case protocol::status::not_found: return "the server serves another name";
  case protocol::status::access_denied: return "the server refused it (remote clients not accepted, or access policy)";
  case protocol::status::bad_version: return "the server does not speak this protocol version";
  case protocol::status::protocol_error: return "the server refused the hello (protocol error)";
  case protocol::status::shutting_down: return "the server is shutting down";
  case protocol::status::user_limit: return "the server's per-user limit";
  case protocol::status::overloaded: return "the server is flooded with unfinished handshakes";
  case protocol::status::wait_queue_full: return "the server's instances are busy and its waiting room is full";
  default: return "the server refused it";
  }
}

} // namespace

gateway_session::gateway_session(std::shared_ptr<gateway_shared> g, tcp::socket s, std::string address)
    : g_(std::move(g)), timer_(s.get_executor()), local_(s.get_executor()), address_(std::move(address)),
      link_(std::make_unique<remote_link>(std::move(s), "the client at " + address_)), started_(clock::now()) {
  ++g_->active;
}

gateway_session::~gateway_session() {
  if (lingers_) --g_->lingering;
  // Every path below counts its end; one that did not (the gateway
  // closing with the session in flight) counts by how far it got.
  if (outcome_ == outcome::none) {
    if (!authenticated_) ++g_->tls_failed;
    else ++g_->refused;
  }
  g_->leave(seq_, graduated_);
  --g_->active;
}

void gateway_session::start(std::uint64_t seq) {
  seq_ = seq;
  auto earliest = [](timeout a, timeout b) { return a < timeout::zero() ? b : b < timeout::zero() ? a : std::min(a, b); };
  arm(earliest(g_->opts.auth_timeout, g_->opts.handshake_timeout), [this] {
    fail(g_->tls ? "no TLS handshake within the authentication timeout (auth_timeout)"
                 : "no hello within the authentication timeout (auth_timeout)");
  });
  // Look at the first byte before speaking TLS: a plaintext npipe hello
  // gets a plaintext answer saying TLS is required, a TLS hello at a
  // plaintext gateway is refused.
  wait_remote(tls::io::want_read, &gateway_session::on_first_byte);
}

void gateway_session::drop(const std::string& why) {
  if (closed_ || authenticated_) return;
  count(outcome::dropped, gateway_event::kind::dropped, why);
  if (talking_) return close(); // its TLS handshake has begun: it cannot read a plaintext word now
  // Not a byte from it yet: say in plaintext that it may try again (an
  // npipe client does, within its deadline), and close. A moment's linger
  // keeps a hello in flight from turning the close into a reset that
  // destroys the answer; bounded, so a flood of drops holds few sockets.
  auto rep = protocol::encode_reply({protocol::version, protocol::status::overloaded, pipe_type::message, 0});
  [[maybe_unused]] auto n = ::send(rfd(), rep.data(), rep.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (g_->lingering.load() >= g_->opts.max_unauthenticated) return close();
  ++g_->lingering;
  lingers_ = true;
  ::shutdown(rfd(), SHUT_WR);
  arm(std::chrono::milliseconds(200), [this] { close(); });
  drain();
}

// Counts how this session ended (once) and tells the observer.
void gateway_session::count(outcome o, gateway_event::kind k, std::string why) {
  if (outcome_ != outcome::none) return;
  outcome_ = o;
  switch (o) {
  case outcome::dropped: ++g_->dropped; break;
  case outcome::tls_failed: ++g_->tls_failed; break;
  case outcome::refused: ++g_->refused; break;
  case outcome::relayed: ++g_->relayed; break;
  case outcome::none: break;
  }
  g_->emit(k, address_, who_, pipe_, std::move(why));
}

// Ends the session with the reason counted for the phase it is in.
void gateway_session::fail(std::string why) {
  if (authenticated_) refused(std::move(why));
  else tls_failed(std::move(why));
  close();
}

// Wait on the remote socket, then call `then` (unless closed meanwhile).
void gateway_session::wait_remote(tls::io want, void (gateway_session::*then)()) {
  link_->wait(want, [self = shared_from_this(), then](std::error_code ec) {
    if (self->closed_) return;
    if (ec) return self->fail("waiting for the client failed: " + ec.message());
    (self.get()->*then)();
  });
}

void gateway_session::on_first_byte() {
  char first = 0;
  ssize_t n = ::recv(rfd(), &first, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    // Readiness is a hint, not a promise: with several threads (and
    // edge-triggered wake-ups) the byte may not be here yet. Wait again.
    return wait_remote(tls::io::want_read, &gateway_session::on_first_byte);
  }
  if (n <= 0) return fail(n == 0 ? "left before saying anything" : std::string("reading failed: ") + std::strerror(errno));
  if (!g_->talking(seq_)) return; // being dropped: drop() says so, in plaintext, before any TLS
  talking_ = true;
  if (g_->tls) {
    if (first == 'N') { // plaintext: answer in plaintext
      tls_failed("a plaintext npipe hello at a TLS port");
      return answer(protocol::status::tls_required);
    }
    std::error_code ec;
    if (!link_->session.start_server(g_->tls, ec)) return fail("out of memory for a TLS session");
    return handshake();
  }
  if (first == 0x16) { // a TLS handshake record: the client wants TLS we do not have
    return fail("a TLS client at a plaintext (--insecure) port");
  }
  tls_done_ = true;
  who_ = "insecure";
  read_hello(); // a plaintext client authenticates (becomes one of max_connections) with its hello
}

void gateway_session::handshake() {
  tls::session& s = link_->session;
  tls::io r = s.handshake();
  if (r == tls::io::end) return fail(s.end_detail());
  if (r != tls::io::done) return wait_remote(r, &gateway_session::handshake);
  std::error_code ec;
  if (!tls::peer_identity_of(s.native(), *g_->tls, who_, ec)) return fail(last_error_detail());
  if (tls::resumed_from_ticket(s.native(), *g_->tls)) ++g_->resumed;
  tls_done_ = true;
  if (!authenticate()) return;
  read_hello();
}

// Moves this connection to the authenticated budget; false when it ended.
bool gateway_session::authenticate() {
  switch (g_->graduate(seq_)) {
  case gateway_shared::graduation::dropped:
    close(); // chosen to make room a moment ago; drop() counts it
    return false;
  case gateway_shared::graduation::full:
    authenticated_ = true;
    // Told it may try again (overloaded): a client that waits gets the
    // next free place.
    refuse(protocol::status::overloaded, "over max_connections (" + std::to_string(g_->opts.max_connections) + ")");
    return false;
  case gateway_shared::graduation::ok: break;
  }
  authenticated_ = graduated_ = true;
  // From here the whole handshake budget applies (TCP connect to hello).
  auto spent = std::chrono::duration_cast<timeout>(clock::now() - started_);
  auto left = g_->opts.handshake_timeout < timeout::zero() ? forever
                                                           : std::max(g_->opts.handshake_timeout - spent, timeout(1));
  arm(left, [this] { fail("no hello within the handshake timeout"); });
  return true;
}

void gateway_session::read_hello() {
  for (;;) {
    std::size_t have = hello_.size();
    if (have >= max_hello_bytes) return refuse(protocol::status::protocol_error, "a hello longer than any valid one");
    hello_.resize(max_hello_bytes);
    std::size_t n = 0;
    tls::io r = link_->session.read(hello_.data() + have, max_hello_bytes - have, n);
    hello_.resize(have + (r == tls::io::done ? n : 0));
    if (r == tls::io::end)
      return fail(link_->session.end_error() ? link_->session.end_detail() : "left before saying which pipe");
    if (r != tls::io::done) return wait_remote(r, &gateway_session::read_hello);
    protocol::hello h;
    std::size_t used = 0;
    std::error_code ec;
    auto st = protocol::decode_hello(hello_, h, used, ec);
    if (st == protocol::decode_status::need_more) continue;
    if (!authenticated_ && !authenticate()) return; // plaintext: the hello is the credential
    if (st == protocol::decode_status::error) return refuse(protocol::status::protocol_error, "not npipe's hello");
    if (h.forwarded) return refuse(protocol::status::protocol_error, "a forwarded hello from the network");
    return on_hello(std::move(h), used);
  }
}

void gateway_session::on_hello(protocol::hello h, std::size_t used) {
  pipe_ = h.name.substr(0, protocol::max_name_bytes);
  if (h.version != protocol::version)
    return refuse(protocol::status::bad_version, "protocol version " + std::to_string(h.version));
  std::error_code ec;
  auto name = pipe_name::parse(h.name, ec);
  if (ec || !name.is_local()) return refuse(protocol::status::not_found, "not a pipe name");
  if (!g_->exported(name)) return refuse(protocol::status::not_found, "not exported");
  client_options co;
  co.pipe_dir = g_->opts.pipe_dir;
  if (!client_target(name, co, target_, ec)) return refuse(protocol::status::not_found, last_error_detail());
  // The local leg: what the client said, plus who it is and where from.
  h.forwarded = true;
  h.remote_user = who_.substr(0, protocol::max_remote_user_bytes);
  h.remote_address = address_.substr(0, protocol::max_remote_address_bytes);
  out_ = protocol::encode_hello(h);
  out_.append(reinterpret_cast<const char*>(hello_.data()) + used, hello_.size() - used);
  hello_ = {};
  local_.async_connect(net::local::stream_protocol::endpoint(target_.address),
                       std_errors([self = shared_from_this()](std::error_code cec) { self->on_local_connect(cec); }));
}

void gateway_session::on_local_connect(std::error_code ec) {
  if (closed_) return;
  if (ec) {
    int e = ec.value();
    if (e == EACCES || e == EPERM)
      return refuse(protocol::status::access_denied, "the pipe's permissions refuse the gateway's user");
    if (e == EAGAIN) return refuse(protocol::status::busy, "the server's accept queue is full");
    return refuse(protocol::status::not_found, "no server is listening");
  }
  // Relay only to a server of our own user: a name squatted by another
  // user must not receive remote clients.
  auto owner = peer_of(local_.native_handle());
  if (owner.uid != static_cast<std::int64_t>(::geteuid()))
    return refuse(protocol::status::access_denied,
                  "the server runs as uid " + std::to_string(owner.uid) + ", not the gateway's user");
  net::async_write(local_, net::buffer(out_), [self = shared_from_this()](const net_error_code& wec, std::size_t) {
    if (self->closed_) return;
    if (wec) return self->refuse(protocol::status::not_found, "the server closed at once");
    self->relay_now();
  });
}

// From here the local server answers (ok, busy after a wait, ...) and the
// two ends talk npipe frames through the relay, which tells us the
// server's answer: relayed if it accepted the client, refused if not. The
// session lives on until the relay ends, so the gateway's count of
// connections stays right.
void gateway_session::relay_now() {
  timer_.cancel();
  out_ = {};
  auto r = std::make_shared<relay>(std::move(link_), std::move(local_), g_->opts.idle_timeout,
                                   relay::sides{"the client", "the server"});
  r->start(
      [self = shared_from_this()](const std::string& why) {
        self->closed_ = true;
        if (self->outcome_ == outcome::relayed) {
          ++self->g_->closed;
          self->g_->emit(gateway_event::kind::closed, self->address_, self->who_, self->pipe_, why);
        } else {
          self->refused("the server did not answer: " + why);
        }
      },
      [w = weak_from_this()](protocol::status st) {
        auto self = w.lock();
        if (!self) return;
        if (st == protocol::status::ok) self->count(outcome::relayed, gateway_event::kind::relayed, {});
        else self->refused(refusal_text(st));
      });
}

// Refuse the client (the answer says why in npipe's terms, the event in ours).
void gateway_session::refuse(protocol::status s, std::string why) {
  refused(std::move(why));
  answer(s);
}

// Send a reply status, then close.
void gateway_session::answer(protocol::status s) {
  auto rep = protocol::encode_reply({protocol::version, s, pipe_type::message, 0});
  reply_.assign(rep.begin(), rep.end());
  reply_off_ = 0;
  send_reply();
}

void gateway_session::send_reply() {
  tls::io r = link_->write_from(reply_.data(), reply_.size(), reply_off_);
  if (r == tls::io::end) return close();
  if (r != tls::io::done) return wait_remote(r, &gateway_session::send_reply);
  linger();
}

// Close after an answer without a reset: a socket closed with unread input
// (the client's hello, a pipelined request) sends RST, which can destroy
// the answer before the client reads it. Say we are done, discard what
// still comes for a moment, then close.
void gateway_session::linger() {
  if (tls_done_) link_->session.shutdown();
  ::shutdown(rfd(), SHUT_WR);
  arm(std::chrono::seconds(1), [this] { close(); });
  drain();
}

void gateway_session::drain() {
  char sink[4096];
  for (;;) {
    ssize_t n = ::recv(rfd(), sink, sizeof sink, MSG_DONTWAIT);
    if (n > 0) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) // a failed wait closes (the end is counted already)
      return wait_remote(tls::io::want_read, &gateway_session::drain);
    if (n < 0 && errno == EINTR) continue;
    return close();
  }
}

void gateway_session::close() {
  if (closed_) return;
  closed_ = true;
  timer_.cancel();
  std::error_code ignore;
  local_.close(into(ignore));
  if (link_) link_->close(tls_done_);
}

} // namespace npipe::detail
