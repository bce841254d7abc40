// SPDX-License-Identifier: MIT
// The gateway: one TCP port per host serving every exported pipe by name (as
// SMB does for Windows pipes). Each remote client is authenticated by TLS 1.3,
// says which pipe it wants (npipe's hello), and is relayed byte for byte to
// that local pipe, whose server sees it as a forwarded (remote) client.
//
// Nothing from a client reaches a local pipe before its TLS handshake has
// succeeded, its hello has been read and its pipe name is on the export list.

#include "core/protocol.hpp"
#include "remote/relay.hpp"
#include "remote/remote.hpp"
#include "remote/tls.hpp"
#include "transport/local_posix.hpp"
#include "transport/posix_util.hpp"

#include <npipe/remote.hpp>

#include <asio.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <fstream>
#include <thread>

namespace npipe {
namespace detail {

namespace {

using tcp = asio::ip::tcp;

// The largest hello a client may send: fixed part, name, and a pipelined
// first request (CallNamedPipe style) with its frame header.
constexpr std::size_t max_hello_bytes =
    protocol::hello_fixed_size + protocol::max_name_bytes + protocol::frame_header_size + pipelined_request_max;


} // namespace

class gateway_session;

// What every session needs from its gateway; sessions keep it alive.
struct gateway_shared {
  gateway_options opts;
  std::shared_ptr<tls::context> tls;
  bool export_all = false;
  std::vector<std::string> exports; // folded
  std::atomic<std::uint64_t> accepted{0}, dropped{0}, tls_failed{0}, refused{0}, relayed{0}, closed{0};
  std::atomic<unsigned> active{0};

  std::mutex ev_mu;
  std::function<void(const gateway_event&)> on_event;
  void emit(gateway_event::kind k, const std::string& address, const std::string& user, const std::string& pipe,
            std::string reason) {
    std::lock_guard lk(ev_mu);
    if (on_event) on_event(gateway_event{k, address, user, pipe, std::move(reason)});
  }

  bool exported(const pipe_name& n) const {
    return export_all || std::find(exports.begin(), exports.end(), n.folded_name()) != exports.end();
  }

  // Admission. Connections that have not authenticated are few and cheap to
  // drop; authenticated ones have their own budget (max_connections).
  struct unauthenticated {
    std::string key; // source address, or IPv6 /64
    std::weak_ptr<gateway_session> session;
    bool talking = false; // has sent its first byte (its TLS handshake has begun)
  };
  std::mutex adm_mu;
  std::map<std::uint64_t, unauthenticated> unauth; // by accept order
  std::map<std::string, unsigned> unauth_per_key;
  unsigned authenticated = 0;
  std::uint64_t next_seq = 0;

  /// A new unauthenticated connection from `key`: registers it and returns
  /// the one to drop for it, if a cap is reached.
  std::shared_ptr<gateway_session> admit(std::uint64_t& seq, const std::string& key,
                                         const std::shared_ptr<gateway_session>& s) {
    std::lock_guard lk(adm_mu);
    std::string victim_key;
    unsigned& mine = unauth_per_key[key];
    if (mine >= opts.max_unauthenticated_per_address) {
      victim_key = key;
    } else if (unauth.size() >= opts.max_unauthenticated) {
      victim_key = key;
      unsigned most = mine;
      for (auto& [k, n] : unauth_per_key)
        if (n > most) {
          most = n;
          victim_key = k;
        }
    }
    std::shared_ptr<gateway_session> victim;
    if (!victim_key.empty()) {
      // The oldest of that address that has said nothing yet: it can be
      // told, in plaintext, to try again. When that address is the
      // newcomer's own and all its others are in their TLS handshake, the
      // newcomer itself is told (a burst from one host is slowed, not cut);
      // another address's oldest goes even mid-handshake (it holds the most).
      auto pick = unauth.end(), oldest = unauth.end();
      for (auto it = unauth.begin(); it != unauth.end(); ++it) {
        if (it->second.key != victim_key) continue;
        if (oldest == unauth.end()) oldest = it;
        if (!it->second.talking) {
          pick = it;
          break;
        }
      }
      if (pick == unauth.end() && victim_key != key) pick = oldest;
      if (pick == unauth.end()) {
        seq = 0; // the newcomer: not registered, dropped at once
        return s;
      }
      victim = pick->second.session.lock();
      forget(pick);
    }
    seq = ++next_seq;
    unauth[seq] = {key, s};
    ++unauth_per_key[key];
    return victim;
  }
  void forget(std::map<std::uint64_t, unauthenticated>::iterator it) {
    if (auto k = unauth_per_key.find(it->second.key); k != unauth_per_key.end() && --k->second == 0)
      unauth_per_key.erase(k);
    unauth.erase(it);
  }
  /// The connection `seq` has sent its first byte; false if it was chosen
  /// to be dropped a moment ago (its drop, which tells it so, is on its way).
  bool talking(std::uint64_t seq) {
    std::lock_guard lk(adm_mu);
    auto it = unauth.find(seq);
    if (it == unauth.end()) return false;
    it->second.talking = true;
    return true;
  }
  std::atomic<unsigned> lingering{0}; // dropped connections still being told why
  enum class graduation { ok, dropped, full };
  /// The connection `seq` has authenticated: it leaves the unauthenticated
  /// budget for the authenticated one (unless it was chosen to be dropped).
  graduation graduate(std::uint64_t seq) {
    std::lock_guard lk(adm_mu);
    auto it = unauth.find(seq);
    if (it == unauth.end()) return graduation::dropped;
    forget(it);
    if (authenticated >= opts.max_connections) return graduation::full;
    ++authenticated;
    return graduation::ok;
  }
  void leave(std::uint64_t seq, bool graduated) {
    std::lock_guard lk(adm_mu);
    if (graduated) --authenticated;
    else if (auto it = unauth.find(seq); it != unauth.end()) forget(it);
  }
};

namespace {

// Rate limits count IPv6 clients by their /64 network (one host's usual
// allocation), IPv4 (and IPv4-mapped IPv6) clients by their address.
std::string address_key(const tcp::endpoint& ep) {
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped()) a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  if (a.is_v4()) return a.to_string();
  auto b = a.to_v6().to_bytes();
  std::string k = "v6:";
  static constexpr char hex[] = "0123456789abcdef";
  for (int i = 0; i < 8; ++i) {
    k += hex[b[static_cast<std::size_t>(i)] >> 4];
    k += hex[b[static_cast<std::size_t>(i)] & 15];
  }
  return k;
}

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

// One remote client, from TCP accept to the hand-over to its relay. Runs on
// the session's strand (the executor of its sockets and timer). Ends in
// exactly one of the gateway's counts: dropped, tls_failed, refused, relayed.
class gateway_session : public std::enable_shared_from_this<gateway_session> {
public:
  gateway_session(std::shared_ptr<gateway_shared> g, tcp::socket s, std::string address)
      : g_(std::move(g)), timer_(s.get_executor()), local_(s.get_executor()), address_(std::move(address)),
        link_(std::make_unique<remote_link>(std::move(s), "the client at " + address_)), started_(clock::now()) {
    ++g_->active;
  }
  ~gateway_session() {
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

  asio::any_io_executor executor() { return timer_.get_executor(); }

  void start(std::uint64_t seq) {
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

  /// Let go to make room for a newer unauthenticated connection (on the strand).
  void drop(const std::string& why) {
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

private:
  enum class outcome { none, dropped, tls_failed, refused, relayed };

  int rfd() { return link_->socket.native_handle(); }
  // Counts how this session ended (once) and tells the observer.
  void count(outcome o, gateway_event::kind k, std::string why) {
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
  void tls_failed(std::string why) { count(outcome::tls_failed, gateway_event::kind::tls_failed, std::move(why)); }
  void refused(std::string why) { count(outcome::refused, gateway_event::kind::refused, std::move(why)); }
  // Ends the session with the reason counted for the phase it is in.
  void fail(std::string why) {
    if (authenticated_) refused(std::move(why));
    else tls_failed(std::move(why));
    close();
  }

  template <class F>
  void arm(timeout t, F on_expiry) {
    if (t < timeout::zero()) return;
    timer_.expires_after(t);
    timer_.async_wait([self = shared_from_this(), on_expiry](std::error_code ec) {
      if (!ec && !self->closed_) on_expiry();
    });
  }
  // Wait on the remote socket, then call `then` (unless closed meanwhile).
  void wait_remote(tls::io want, void (gateway_session::*then)()) {
    link_->wait(want, [self = shared_from_this(), then](std::error_code ec) {
      if (self->closed_) return;
      if (ec) return self->fail("waiting for the client failed: " + ec.message());
      (self.get()->*then)();
    });
  }

  void on_first_byte() {
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
      if (!link_->session.start_server(*g_->tls, ec)) return fail("out of memory for a TLS session");
      return handshake();
    }
    if (first == 0x16) { // a TLS handshake record: the client wants TLS we do not have
      return fail("a TLS client at a plaintext (--insecure) port");
    }
    tls_done_ = true;
    who_ = "insecure";
    read_hello(); // a plaintext client authenticates (becomes one of max_connections) with its hello
  }

  void handshake() {
    tls::session& s = link_->session;
    tls::io r = s.handshake();
    if (r == tls::io::end) return fail(s.end_detail());
    if (r != tls::io::done) return wait_remote(r, &gateway_session::handshake);
    std::error_code ec;
    if (!tls::peer_identity_of(s.native(), *g_->tls, who_, ec)) return fail(last_error_detail());
    tls_done_ = true;
    if (!authenticate()) return;
    read_hello();
  }

  // Moves this connection to the authenticated budget; false when it ended.
  bool authenticate() {
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

  void read_hello() {
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

  void on_hello(protocol::hello h, std::size_t used) {
    pipe_ = h.name.substr(0, protocol::max_name_bytes);
    if (h.version != protocol::version)
      return refuse(protocol::status::bad_version, "protocol version " + std::to_string(h.version));
    std::error_code ec;
    auto name = pipe_name::parse(h.name, ec);
    if (ec || !name.is_local()) return refuse(protocol::status::not_found, "not a pipe name");
    if (!g_->exported(name)) return refuse(protocol::status::not_found, "not exported");
    client_options co;
    co.pipe_dir = g_->opts.pipe_dir;
    std::string path;
    if (!client_path(name, co, path, ec)) return refuse(protocol::status::not_found, last_error_detail());
    // The local leg: what the client said, plus who it is and where from.
    h.forwarded = true;
    h.remote_user = who_.substr(0, protocol::max_remote_user_bytes);
    h.remote_address = address_.substr(0, protocol::max_remote_address_bytes);
    out_ = protocol::encode_hello(h);
    out_.append(reinterpret_cast<const char*>(hello_.data()) + used, hello_.size() - used);
    hello_ = {};
    local_.async_connect(asio::local::stream_protocol::endpoint(path),
                         [self = shared_from_this()](std::error_code cec) { self->on_local_connect(cec); });
  }

  void on_local_connect(std::error_code ec) {
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
    asio::async_write(local_, asio::buffer(out_), [self = shared_from_this()](std::error_code wec, std::size_t) {
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
  void relay_now() {
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
  void refuse(protocol::status s, std::string why) {
    refused(std::move(why));
    answer(s);
  }
  // Send a reply status, then close.
  void answer(protocol::status s) {
    auto rep = protocol::encode_reply({protocol::version, s, pipe_type::message, 0});
    reply_.assign(rep.begin(), rep.end());
    reply_off_ = 0;
    send_reply();
  }
  void send_reply() {
    tls::io r = link_->write_from(reply_.data(), reply_.size(), reply_off_);
    if (r == tls::io::end) return close();
    if (r != tls::io::done) return wait_remote(r, &gateway_session::send_reply);
    linger();
  }
  // Close after an answer without a reset: a socket closed with unread input
  // (the client's hello, a pipelined request) sends RST, which can destroy
  // the answer before the client reads it. Say we are done, discard what
  // still comes for a moment, then close.
  void linger() {
    if (tls_done_) link_->session.shutdown();
    ::shutdown(rfd(), SHUT_WR);
    arm(std::chrono::seconds(1), [this] { close(); });
    drain();
  }
  void drain() {
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

  void close() {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    std::error_code ignore;
    local_.close(ignore);
    if (link_) link_->close(tls_done_);
  }

  std::shared_ptr<gateway_shared> g_;
  asio::steady_timer timer_;
  unix_socket local_;
  std::string address_, who_, pipe_;
  std::unique_ptr<remote_link> link_;
  std::vector<std::byte> hello_, reply_;
  std::size_t reply_off_ = 0;
  std::string out_;
  clock::time_point started_;
  std::uint64_t seq_ = 0;
  outcome outcome_ = outcome::none;
  bool tls_done_ = false, closed_ = false;
  bool talking_ = false, lingers_ = false;
  bool authenticated_ = false; // through TLS (plaintext: through its hello), or refused after it
  bool graduated_ = false;     // counted in gateway_shared::authenticated
};

namespace {

std::string address_of(const tcp::endpoint& ep) {
  return endpoint_text(ep.address().to_string(), ep.port());
}

} // namespace

class gateway_impl {
public:
  bool open(const gateway_options& o, std::error_code& ec) {
    g_ = std::make_shared<gateway_shared>();
    g_->opts = o;
    // Each invalid option is named, with its value and what is allowed.
    if (o.threads < 1) return option_out_of_range("gateway_options::threads", o.threads, "1 or more", ec);
    if (o.max_connections < 1)
      return option_out_of_range("gateway_options::max_connections", o.max_connections, "1 or more", ec);
    if (o.max_unauthenticated < 1)
      return option_out_of_range("gateway_options::max_unauthenticated", o.max_unauthenticated, "1 or more", ec);
    if (o.max_unauthenticated_per_address < 1)
      return option_out_of_range("gateway_options::max_unauthenticated_per_address", o.max_unauthenticated_per_address,
                                 "1 or more", ec);
    for (const auto& e : o.exports) {
      if (e == "*") {
        g_->export_all = true;
        continue;
      }
      auto n = pipe_name::parse(e, ec);
      if (ec || !n.is_local()) {
        set_error_detail("cannot export '" + e + "': not a local pipe name");
        ec = make_error_code(errc::invalid_name);
        return false;
      }
      g_->exports.push_back(n.folded_name());
    }
    if (!o.tls.insecure) {
      g_->tls = tls::context::make(tls::role::server, o.tls, ec);
      if (!g_->tls) return false;
    } else if (!tls::check_options(tls::role::server, o.tls, ec)) {
      return false;
    }
    std::vector<std::string> addrs = o.listen;
    bool any = addrs.empty();
    if (any) addrs = {"::"};
    std::uint16_t port = o.port;
    for (auto a : addrs) {
      if (a.size() > 2 && a.front() == '[' && a.back() == ']') a = a.substr(1, a.size() - 2);
      std::error_code aec;
      auto addr = asio::ip::make_address(a, aec);
      if (aec) {
        set_error_detail("cannot listen on '" + a + "': not an IP address");
        ec = make_error_code(errc::invalid_argument);
        return false;
      }
      tcp::acceptor acc(io_);
      tcp::endpoint ep(addr, port);
      acc.open(ep.protocol(), aec);
      if (aec && any) { // no IPv6 on this host: every IPv4 interface instead
        ep = tcp::endpoint(asio::ip::address_v4::any(), port);
        acc.open(ep.protocol(), aec);
      }
      if (!aec) {
        acc.set_option(asio::socket_base::reuse_address(true), aec);
        if (ep.address().is_v6() && any) acc.set_option(asio::ip::v6_only(false), aec);
        aec.clear();
        acc.bind(ep, aec);
      }
      if (!aec) acc.listen(asio::socket_base::max_listen_connections, aec);
      if (aec) {
        set_error_detail("cannot listen on " + address_of(ep) + ": " + aec.message());
        ec = aec == asio::error::address_in_use ? make_error_code(errc::name_in_use, aec.value())
                                                : make_error_code(errc::system_error, aec.value());
        return false;
      }
      port = acc.local_endpoint().port(); // port 0: the others listen on the same one
      acceptors_.push_back(std::make_unique<tcp::acceptor>(std::move(acc)));
    }
    port_ = port;
    for (auto& a : acceptors_) accept(*a);
    for (unsigned i = 0; i < o.threads; ++i) threads_.emplace_back([this] { io_.run(); });
    return true;
  }

  ~gateway_impl() { close(); }

  void close() noexcept {
    if (closed_.exchange(true)) return;
    work_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    acceptors_.clear();
    // Pending handlers (and the sessions they own) go when io_ is destroyed.
  }

  std::uint16_t port() const noexcept { return port_; }
  void on_event(std::function<void(const gateway_event&)> f) {
    std::lock_guard lk(g_->ev_mu);
    g_->on_event = std::move(f);
  }
  gateway_stats stats() const noexcept {
    if (!g_) return {};
    return {g_->accepted.load(), g_->dropped.load(), g_->tls_failed.load(), g_->refused.load(),
            g_->relayed.load(),  g_->closed.load(),  g_->active.load()};
  }
  bool is_open() const noexcept { return !closed_.load() && !acceptors_.empty(); }

private:
  void accept(tcp::acceptor& acc) {
    acc.async_accept(asio::make_strand(io_), [this, &acc](std::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || closed_) return;
      if (ec) { // out of descriptors and the like: back off, keep serving the others
        auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
        t->async_wait([this, &acc, t](std::error_code) { accept(acc); });
        return;
      }
      ++g_->accepted;
      std::error_code pec;
      auto peer = s.remote_endpoint(pec);
      if (pec) { // gone already
        ++g_->tls_failed;
        g_->emit(gateway_event::kind::tls_failed, {}, {}, {}, "left before it could be served");
        s.close(pec);
      } else {
        tune_tcp(s.native_handle());
        auto session = std::make_shared<gateway_session>(g_, std::move(s), address_of(peer));
        std::uint64_t seq = 0;
        auto victim = g_->admit(seq, address_key(peer), session);
        if (victim == session) {
          asio::dispatch(session->executor(), [session] {
            session->drop("over max_unauthenticated_per_address or max_unauthenticated; told to try again");
          });
        } else {
          if (victim)
            asio::dispatch(victim->executor(), [victim] { victim->drop("made room for a newer connection"); });
          session->start(seq);
        }
      }
      accept(acc);
    });
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::shared_ptr<gateway_shared> g_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  std::vector<std::thread> threads_;
  std::uint16_t port_ = 0;
  std::atomic<bool> closed_{false};
};

} // namespace detail

gateway::gateway() noexcept = default;
gateway::gateway(const gateway_options& opts) { open(opts); }
gateway::gateway(gateway&&) noexcept = default;
gateway& gateway::operator=(gateway&& o) noexcept {
  if (this != &o) {
    close();
    impl_ = std::move(o.impl_);
  }
  return *this;
}
gateway::~gateway() = default;

void gateway::open(const gateway_options& opts, std::error_code& ec) {
  detail::call_scope scope(ec);
  close();
  auto g = std::make_unique<detail::gateway_impl>();
  if (!g->open(opts, ec)) return;
  impl_ = std::move(g);
}
void gateway::open(const gateway_options& opts) {
  std::error_code ec;
  open(opts, ec);
  if (ec) detail::throw_error(ec, "cannot start the gateway");
}
bool gateway::is_open() const noexcept { return impl_ && impl_->is_open(); }
std::uint16_t gateway::port() const noexcept { return impl_ ? impl_->port() : 0; }
gateway_stats gateway::stats() const noexcept { return impl_ ? impl_->stats() : gateway_stats{}; }
void gateway::on_event(std::function<void(const gateway_event&)> f) {
  if (impl_) impl_->on_event(std::move(f));
}
void gateway::close() noexcept {
  if (impl_) impl_->close();
}

std::vector<psk_key> load_psk_file(const std::string& path, std::error_code& ec) {
  detail::call_scope scope(ec);
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    detail::set_error_detail("cannot read the PSK file " + path);
    ec = detail::errno_error(errno);
    return {};
  }
  if (st.st_mode & 077) {
    detail::set_error_detail("the PSK file " + path + " is readable by other users; chmod 600 it");
    ec = make_error_code(errc::access_denied);
    return {};
  }
  std::ifstream in(path);
  if (S_ISDIR(st.st_mode) || !in) { // a directory, or not readable by this user
    int e = S_ISDIR(st.st_mode) ? EISDIR : errno;
    detail::set_error_detail("cannot read the PSK file " + path);
    ec = detail::errno_error(e);
    return {};
  }
  std::vector<psk_key> out;
  std::string line;
  int no = 0;
  auto hexval = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  while (std::getline(in, line)) {
    ++no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    auto colon = line.rfind(':');
    bool ok = colon != std::string::npos && colon > 0 && (line.size() - colon - 1) % 2 == 0;
    psk_key k;
    if (ok) {
      k.identity = line.substr(0, colon);
      for (std::size_t i = colon + 1; ok && i < line.size(); i += 2) {
        int hi = hexval(line[i]), lo = hexval(line[i + 1]);
        ok = hi >= 0 && lo >= 0;
        k.key.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
      }
    }
    if (!ok) {
      detail::set_error_detail(path + ":" + std::to_string(no) + ": expected IDENTITY:HEXKEY");
      ec = make_error_code(errc::invalid_argument);
      return {};
    }
    out.push_back(std::move(k));
  }
  if (out.empty()) {
    detail::set_error_detail("the PSK file " + path + " holds no key");
    ec = make_error_code(errc::invalid_argument);
    return {};
  }
  tls_options check;
  check.psk = out;
  check.ca_file = "-"; // only the keys are checked here
  if (!detail::tls::check_options(detail::tls::role::client, check, ec)) return {};
  return out;
}

std::vector<psk_key> load_psk_file(const std::string& path) {
  std::error_code ec;
  auto v = load_psk_file(path, ec);
  if (ec) detail::throw_error(ec, "cannot load pre-shared keys");
  return v;
}

} // namespace npipe
