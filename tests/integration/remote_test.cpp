// SPDX-License-Identifier: MIT
// Remote pipes: the gateway, TLS 1.3 and what it refuses, forwarded
// identities, timeouts, peers leaving mid-message, and two hosts in two
// network namespaces. The semantics rows themselves run remotely in
// portable_test.cpp (Via/Portable.*/remote_*).

#include "core/protocol.hpp"
#include "remote/tls.hpp"
#include "remote/tls_session.hpp"
#include "raw_peer.hpp"
#include "remote_support.hpp"
#include "test_support.hpp"

#include <npipe/async.hpp>
#include <npipe/npipe.hpp>
#include <npipe/remote.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(io_context.hpp)

#include <gtest/gtest.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <atomic>
#include <mutex>
#include <fstream>
#include <functional>
#include <future>
#include <optional>
#include <sstream>
#include <thread>

using namespace std::chrono_literals;
using namespace npipe;
using namespace npipe::test;

namespace {

using Remote = local_test;

// An echo server that lets remote clients in and counts what reaches it.
class counting_echo {
public:
  explicit counting_echo(const pipe_name& name, server_options o = {}) {
    o.accept_remote = true;
    srv_.open(name, o);
    t_ = std::thread([this] {
      for (;;) {
        std::error_code ec;
        auto c = srv_.accept(ec);
        if (ec) return;
        ++accepted_;
        workers_.emplace_back([this, c = std::move(c)]() mutable {
          for (;;) {
            std::error_code rec;
            auto m = c.receive(30s, rec);
            if (rec) return;
            bytes_ += m.size();
            c.write(m, 30s, rec);
            if (rec) return;
          }
        });
      }
    });
  }
  ~counting_echo() {
    srv_.close();
    t_.join();
    for (auto& w : workers_) w.join();
  }
  int accepted() const { return accepted_.load(); }
  std::size_t bytes() const { return bytes_.load(); }
private:
  server srv_;
  std::thread t_;
  std::atomic<int> accepted_{0};
  std::atomic<std::size_t> bytes_{0};
  std::vector<std::thread> workers_;
};

gateway start_gateway(const tls_options& tls, std::vector<std::string> exports = {"*"},
                      const std::string& host = "127.0.0.1") {
  auto g = loopback_gateway(tls);
  g.exports = std::move(exports);
  g.listen = {host};
  return gateway(g);
}

tls_options with(std::initializer_list<std::pair<const char*, std::string>> fields) {
  tls_options t;
  for (auto& [k, v] : fields) {
    std::string key = k;
    if (key == "ca") t.ca_file = v;
    else if (key == "cert") t.cert_file = v;
    else if (key == "key") t.key_file = v;
    else if (key == "psk") t.psk = load_psk_file(v);
    else if (key == "insecure") t.insecure = true;
  }
  return t;
}

// A TCP socket listening on 127.0.0.1 at a port the kernel picks (in `a`),
// `tune` run on it first; -1 if any step fails.
int loopback_listener(sockaddr_in& a, int backlog, const std::function<void(int)>& tune = {}) {
  int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0) return -1;
  if (tune) tune(l);
  a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, backlog) != 0 ||
      ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &alen) != 0) {
    ::close(l);
    return -1;
  }
  return l;
}

tls_options gateway_certs_only() {
  return with({{"ca", cert("ca.pem")}, {"cert", cert("server.pem")}, {"key", cert("server.key")}});
}

// --------------------------------------------------------- TLS failure cases

struct tls_failure {
  const char* name;
  std::function<tls_options()> gateway_tls;
  std::function<tls_options()> client_tls;
  errc expect;
  const char* detail; // a piece of last_error_detail()
};

void PrintTo(const tls_failure& f, std::ostream* os) { *os << f.name; }

class TlsFailures : public Remote, public ::testing::WithParamInterface<tls_failure> {};

TEST_P(TlsFailures, FailCleanlyWithAClearErrorAndNothingReachesThePipe) {
  const auto& p = GetParam();
  auto name = random_pipe();
  counting_echo echo(name);
  auto gw = start_gateway(p.gateway_tls());
  std::mutex mu;
  std::vector<gateway_event> events;
  gw.on_event([&](const gateway_event& e) {
    std::lock_guard lk(mu);
    events.push_back(e);
  });
  client_options co;
  co.tls = p.client_tls();
  std::error_code ec;
  auto c = connect(remote_name("127.0.0.1", gw.port(), name), co, 10s, ec);
  EXPECT_EQ(ec, p.expect) << ec.message() << " / " << last_error_detail();
  EXPECT_NE(last_error_detail().find(p.detail), std::string::npos) << last_error_detail();
  EXPECT_FALSE(c.is_open());
  // Every connection ends in one of the gateway's counts: once this one is
  // counted as failed, it can no longer reach the pipe.
  EXPECT_TRUE(wait_until([&] {
    std::lock_guard lk(mu);
    return gw.stats().tls_failed >= 1 && !events.empty();
  }, 10s));
  EXPECT_EQ(echo.accepted(), 0) << "a peer that fails TLS never reaches a pipe";
  EXPECT_EQ(gw.stats().relayed, 0u);
  EXPECT_EQ(gw.stats().tls_failed, 1u);
  std::lock_guard lk(mu);
  ASSERT_EQ(events.size(), 1u) << "one event: the TLS failure, with its reason";
  EXPECT_EQ(events[0].what, gateway_event::kind::tls_failed);
  EXPECT_EQ(events[0].address.rfind("127.0.0.1:", 0), 0u) << events[0].address;
  EXPECT_FALSE(events[0].reason.empty());
}

tls_options client_certs_from(const std::string& ca, const std::string& crt, const std::string& key) {
  return with({{"ca", cert(ca)}, {"cert", cert(crt)}, {"key", cert(key)}});
}

INSTANTIATE_TEST_SUITE_P(
    Remote, TlsFailures,
    ::testing::Values(
        tls_failure{"no_client_certificate", gateway_certs_only, [] { return with({{"ca", cert("ca.pem")}}); },
                    errc::access_denied, "certificate required"},
        tls_failure{"client_certificate_of_another_ca", gateway_certs_only,
                    [] { return client_certs_from("ca.pem", "other/client.pem", "other/client.key"); },
                    errc::access_denied, "unknown ca"},
        tls_failure{"server_certificate_of_another_ca", gateway_certs_only,
                    [] { return client_certs_from("other/ca.pem", "client.pem", "client.key"); },
                    errc::access_denied, "failed verification"},
        tls_failure{"expired_server_certificate",
                    [] { return with({{"ca", cert("ca.pem")}, {"cert", cert("expired.pem")}, {"key", cert("expired.key")}}); },
                    [] { return client_certs(); }, errc::access_denied, "certificate has expired"},
        tls_failure{"expired_client_certificate", gateway_certs_only,
                    [] { return client_certs_from("ca.pem", "client-expired.pem", "client-expired.key"); },
                    errc::access_denied, "certificate expired"},
        tls_failure{"hostname_mismatch",
                    [] {
                      return with({{"ca", cert("ca.pem")}, {"cert", cert("wronghost.pem")}, {"key", cert("wronghost.key")}});
                    },
                    [] { return client_certs(); }, errc::access_denied, "mismatch"},
        tls_failure{"wrong_pre_shared_key", [] { return gateway_certs_and_psk(); },
                    [] { return with({{"psk", cert("psk-wrong.txt")}}); }, errc::access_denied, "TLS"},
        tls_failure{"unknown_psk_identity", [] { return gateway_certs_and_psk(); },
                    [] { return with({{"psk", cert("psk-unknown.txt")}}); }, errc::access_denied, "verification"},
        tls_failure{"plaintext_client_to_a_tls_port", [] { return gateway_certs_and_psk(); },
                    [] { return with({{"insecure", ""}}); }, errc::access_denied, "speaks only TLS"},
        tls_failure{"tls_client_to_a_plaintext_port", [] { return with({{"insecure", ""}}); },
                    [] { return client_psk(); }, errc::broken_pipe, "during the TLS handshake"}),
    [](const auto& i) { return std::string(i.param.name); });

// A raw OpenSSL end limited to TLS 1.2.
SSL_CTX* tls12_context(bool server) {
  SSL_CTX* x = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  SSL_CTX_set_max_proto_version(x, TLS1_2_VERSION);
  if (server) {
    SSL_CTX_use_certificate_chain_file(x, cert("server.pem").c_str());
    SSL_CTX_use_PrivateKey_file(x, cert("server.key").c_str(), SSL_FILETYPE_PEM);
  } else {
    SSL_CTX_use_certificate_chain_file(x, cert("client.pem").c_str());
    SSL_CTX_use_PrivateKey_file(x, cert("client.key").c_str(), SSL_FILETYPE_PEM);
  }
  return x;
}

TEST_F(Remote, Tls12OnlyPeersAreRefusedBothWays) {
  auto name = random_pipe();
  counting_echo echo(name);
  auto gw = start_gateway(gateway_certs_and_psk());
  // A TLS 1.2-only client at the gateway.
  SSL_CTX* cx = tls12_context(false);
  int fd = raw_tcp_connect("127.0.0.1", gw.port());
  ASSERT_GE(fd, 0);
  SSL* ssl = SSL_new(cx);
  SSL_set_fd(ssl, fd);
  EXPECT_NE(SSL_connect(ssl), 1) << "the gateway speaks TLS 1.3 only";
  ERR_clear_error();
  SSL_free(ssl);
  ::close(fd);
  SSL_CTX_free(cx);
  EXPECT_TRUE(wait_until([&] { return gw.stats().tls_failed >= 1; }, 10s)); // counted: it never reaches the pipe
  EXPECT_EQ(echo.accepted(), 0);
  EXPECT_EQ(gw.stats().tls_failed, 1u);

  // npipe's client at a TLS 1.2-only server.
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  socklen_t len = sizeof sa;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len);
  std::thread old_server([lfd] {
    SSL_CTX* sx = tls12_context(true);
    int c = ::accept(lfd, nullptr, nullptr);
    SSL* s = SSL_new(sx);
    SSL_set_fd(s, c);
    SSL_accept(s); // fails: the client insists on 1.3
    ERR_clear_error();
    SSL_free(s);
    ::close(c);
    SSL_CTX_free(sx);
  });
  client_options co;
  co.tls = client_certs();
  std::error_code ec;
  connect(remote_name("127.0.0.1", ntohs(sa.sin_port), name), co, 10s, ec);
  EXPECT_EQ(ec, errc::protocol_error) << ec.message() << " / " << last_error_detail();
  EXPECT_NE(last_error_detail().find("does not speak TLS 1.3"), std::string::npos) << last_error_detail();
  old_server.join();
  ::close(lfd);
}

// ------------------------------------------------ who may come in, and how

TEST_F(Remote, UnexportedPipesAndServersThatRefuseRemoteClientsSaySo) {
  auto name = random_pipe();
  counting_echo echo(name);
  client_options co;
  co.tls = client_psk();
  {
    auto gw = start_gateway(gateway_certs_and_psk(), {"some-other-pipe"});
    std::promise<gateway_event> refused;
    std::atomic<bool> first{true};
    gw.on_event([&](const gateway_event& e) {
      if (first.exchange(false)) refused.set_value(e);
    });
    std::error_code ec;
    connect(remote_name("127.0.0.1", gw.port(), name), co, 5s, ec);
    EXPECT_EQ(ec, errc::not_found);
    auto e = refused.get_future().get();
    EXPECT_EQ(e.what, gateway_event::kind::refused);
    EXPECT_EQ(e.pipe, name.name());
    EXPECT_EQ(e.user, "psk:npipe-client");
    EXPECT_EQ(e.reason, "not exported");
    EXPECT_NE(last_error_detail().find("does not export"), std::string::npos) << last_error_detail();
    EXPECT_EQ(gw.stats().refused, 1u);
  }
  {
    auto gw = start_gateway(gateway_certs_and_psk(), {name.name()});
    auto c = connect(remote_name("127.0.0.1", gw.port(), name), co, 5s);
    EXPECT_EQ(c.transact("exported by name"), "exported by name");
  }
  // A server that did not opt in (the default, like PIPE_REJECT_REMOTE_CLIENTS).
  auto closed_name = random_pipe();
  server plain(closed_name);
  auto gw = start_gateway(gateway_certs_and_psk());
  std::promise<gateway_event> refusal;
  std::atomic<bool> once{true};
  gw.on_event([&](const gateway_event& e) {
    if (once.exchange(false)) refusal.set_value(e);
  });
  std::error_code ec;
  connect(remote_name("127.0.0.1", gw.port(), closed_name), co, 5s, ec);
  EXPECT_EQ(ec, errc::access_denied);
  EXPECT_NE(last_error_detail().find("does not accept remote clients"), std::string::npos) << last_error_detail();
  EXPECT_EQ(plain.active_instances(), 0u);
  // The gateway reports the server's refusal as a refusal, not as a relay.
  auto e = refusal.get_future().get();
  EXPECT_EQ(e.what, gateway_event::kind::refused);
  EXPECT_NE(e.reason.find("refused"), std::string::npos) << e.reason;
  EXPECT_EQ(gw.stats().relayed, 0u);
  EXPECT_EQ(gw.stats().refused, 1u);
}

TEST_F(Remote, HostNamesResolveAndTheCertificateNameIsChecked) {
  auto name = random_pipe();
  counting_echo echo(name);
  auto gw = start_gateway(gateway_certs_and_psk());
  client_options co;
  co.tls = client_certs();
  // The certificate carries DNS:localhost: a host name, resolved, checked (and sent as SNI).
  auto c = connect(remote_name("localhost", gw.port(), name), co, 5s);
  EXPECT_EQ(c.transact("by name"), "by name");
  EXPECT_EQ(c.peer().user, "CN=localhost,O=npipe");
  // An explicit server_name overrides the host for the check.
  co.tls.server_name = "elsewhere.example";
  std::error_code ec;
  connect(remote_name("127.0.0.1", gw.port(), name), co, 5s, ec);
  EXPECT_EQ(ec, errc::access_denied);
  EXPECT_NE(last_error_detail().find("mismatch"), std::string::npos) << last_error_detail();
  connect(remote_name("no-such-host.invalid", gw.port(), name), co, 5s, ec);
  EXPECT_EQ(ec, errc::not_found);
  EXPECT_NE(last_error_detail().find("cannot resolve"), std::string::npos) << last_error_detail();
  // Nothing listening on the port: not_found, like a missing local pipe.
  auto port = gw.port();
  gw.close();
  connect(remote_name("127.0.0.1", port, name), co, 5s, ec);
  EXPECT_EQ(ec, errc::not_found);
  EXPECT_NE(last_error_detail().find("nothing listens"), std::string::npos) << last_error_detail();
}


// The gateway sets TCP_NODELAY and its keepalive probes on its listening
// sockets only: Linux copies them to each socket accept() returns. If a
// kernel stopped doing that, relayed replies would wait for Nagle and dead
// hosts would hold connections: this says so.
TEST_F(Remote, TcpOptionsOfAListeningSocketReachTheSocketsItAccepts) {
  int one = 1, idle = 30, interval = 10, count = 3; // as tune_tcp (src/remote/dial.cpp)
  sockaddr_in a{};
  int l = loopback_listener(a, 1, [&](int fd) {
    EXPECT_EQ(::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);
    EXPECT_EQ(::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one), 0);
    EXPECT_EQ(::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle), 0);
    EXPECT_EQ(::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval), 0);
    EXPECT_EQ(::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count), 0);
  });
  ASSERT_GE(l, 0);
  int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  int s = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(s, 0);
  auto get = [&](int level, int opt) {
    int v = -1;
    socklen_t n = sizeof v;
    EXPECT_EQ(::getsockopt(s, level, opt, &v, &n), 0);
    return v;
  };
  EXPECT_EQ(get(IPPROTO_TCP, TCP_NODELAY), 1);
  EXPECT_EQ(get(SOL_SOCKET, SO_KEEPALIVE), 1);
  EXPECT_EQ(get(IPPROTO_TCP, TCP_KEEPIDLE), idle);
  EXPECT_EQ(get(IPPROTO_TCP, TCP_KEEPINTVL), interval);
  EXPECT_EQ(get(IPPROTO_TCP, TCP_KEEPCNT), count);
  ::close(s);
  ::close(c);
  ::close(l);
}

// Certificate clients resume: the gateway sends a TLS 1.3 session ticket,
// the client offers it on its next connect to the same gateway and name,
// and both ends keep the identities of the handshake that made it. A ticket
// is not offered to another name, a PSK client does not use them, and a
// gateway that reopens cannot read the tickets of the one before.
TEST_F(Remote, CertificateClientsResumeTlsSessionsWithTheSameIdentities) {
  auto name = random_pipe();
  server_options so;
  so.accept_remote = true;
  server srv(name, so);
  std::mutex mu;
  std::vector<std::string> users;
  std::thread t([&] {
    for (;;) {
      std::error_code ec;
      auto c = srv.accept(ec);
      if (ec) return;
      {
        std::lock_guard lk(mu);
        users.push_back(c.peer().user);
      }
      auto m = c.receive(10s, ec);
      if (!ec) c.write(m, 10s, ec);
    }
  });
  auto opts = loopback_gateway(gateway_certs_and_psk());
  auto gw = std::make_unique<gateway>(opts);
  client_options co;
  co.tls = client_certs();
  auto call_as = [&](const std::string& host, const client_options& o) {
    std::error_code ec;
    auto c = connect(remote_name(host, gw->port(), name), o, 10s, ec);
    if (ec) return "connect: " + ec.message() + " / " + last_error_detail();
    auto r = c.transact("ticket", 10s, ec);
    if (ec) return "transact: " + ec.message();
    return r + " from " + c.peer().user;
  };
  const std::string expect = "ticket from CN=localhost,O=npipe";
  EXPECT_EQ(call_as("127.0.0.1", co), expect);
  EXPECT_EQ(gw->stats().resumed, 0u) << "the first connect is a full handshake";
  EXPECT_EQ(call_as("127.0.0.1", co), expect);
  EXPECT_EQ(gw->stats().resumed, 1u) << "the second resumes with the ticket from the first";
  EXPECT_EQ(call_as("127.0.0.1", co), expect);
  EXPECT_EQ(gw->stats().resumed, 2u) << "and the third with the ticket from the second";
  EXPECT_EQ(call_as("localhost", co), expect);
  EXPECT_EQ(gw->stats().resumed, 2u) << "a ticket is for the name it was verified as";
  client_options pco;
  pco.tls = client_psk();
  EXPECT_EQ(call_as("127.0.0.1", pco), "ticket from psk:npipe-client");
  EXPECT_EQ(call_as("127.0.0.1", pco), "ticket from psk:npipe-client");
  EXPECT_EQ(gw->stats().resumed, 2u) << "PSK clients do not resume";
  // The same address, a new gateway: its ticket key is new, so the
  // client's ticket fails to decrypt and a full handshake follows.
  opts.port = gw->port();
  gw.reset();
  gw = std::make_unique<gateway>(opts);
  EXPECT_EQ(call_as("127.0.0.1", co), expect);
  EXPECT_EQ(gw->stats().resumed, 0u);
  EXPECT_EQ(call_as("127.0.0.1", co), expect);
  EXPECT_EQ(gw->stats().resumed, 1u);
  srv.close();
  t.join();
  std::lock_guard lk(mu);
  ASSERT_EQ(users.size(), 8u);
  for (std::size_t i = 0; i < users.size(); ++i) {
    bool psk = i == 4 || i == 5;
    EXPECT_EQ(users[i], psk ? "psk:npipe-client" : "CN=npipe-client,O=npipe") << i;
  }
}

// A renewed ticket keeps the time of the full handshake behind it: past
// session_resumption from that handshake the gateway does not resume, even
// with a ticket issued a moment ago, and verifies the certificate again.
// Zero turns tickets off. (Real seconds pass: the rule is about time.)
TEST_F(Remote, ResumptionEndsSessionResumptionAfterTheFullHandshakeHoweverOftenItIsRenewed) {
  auto name = random_pipe();
  counting_echo echo(name);
  auto opts = loopback_gateway(gateway_certs_only());
  opts.session_resumption = std::chrono::seconds(6);
  gateway gw(opts);
  client_options co;
  co.tls = client_certs();
  auto where = remote_name("127.0.0.1", gw.port(), name);
  auto works = [&] {
    auto c = connect(where, co, 10s);
    return c.transact("again", 10s) == "again";
  };
  auto at_least = [](std::time_t t) { return wait_until([t] { return ::time(nullptr) >= t; }, 20s); };
  ASSERT_TRUE(works()); // the full handshake, at some second s <= a
  const std::time_t a = ::time(nullptr);
  ASSERT_TRUE(at_least(a + 3));
  ASSERT_TRUE(works()); // 3 or 4 s after it: resumed, and a new ticket (issued at >= a + 3)
  EXPECT_EQ(gw.stats().resumed, 1u);
  ASSERT_TRUE(at_least(a + 7));
  // Over 6 s since the full handshake, but the client's new ticket is not
  // 6 s old (it offers it until a + 9): the gateway declines it.
  ASSERT_LT(::time(nullptr), a + 9) << "the machine stalled for seconds; the window was missed";
  ASSERT_TRUE(works());
  EXPECT_EQ(gw.stats().resumed, 1u) << "a full handshake, not a resumption";
  ASSERT_TRUE(works());
  EXPECT_EQ(gw.stats().resumed, 2u) << "and from that full handshake on, resumption again";

  opts.session_resumption = std::chrono::seconds(0);
  opts.port = 0;
  gateway off(opts);
  auto off_where = remote_name("127.0.0.1", off.port(), name);
  for (int i = 0; i < 3; ++i) {
    auto c = connect(off_where, co, 10s);
    EXPECT_EQ(c.transact("no tickets", 10s), "no tickets");
  }
  EXPECT_EQ(off.stats().resumed, 0u);
  opts.session_resumption = std::chrono::hours(24 * 8);
  std::error_code ec;
  gateway too_long;
  too_long.open(opts, ec);
  EXPECT_EQ(ec, errc::invalid_argument);
  EXPECT_NE(last_error_detail().find("session_resumption"), std::string::npos) << last_error_detail();
}

// The gateway's own rule, for a client that offers an old ticket anyway (a
// well-behaved client, npipe's included, drops it when the lifetime the
// gateway gave it ends): a raw OpenSSL client resumes once, late, keeps the
// renewed ticket, says it is new and offers it past session_resumption from
// the full handshake, though not past the renewal's own lifetime. The
// gateway declines it (a full handshake, which succeeds).
TEST_F(Remote, TheGatewayDeclinesATicketPastSessionResumptionWhateverTheClientClaims) {
  auto name = random_pipe();
  counting_echo echo(name);
  auto opts = loopback_gateway(gateway_certs_only());
  opts.session_resumption = std::chrono::seconds(6);
  gateway gw(opts);
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> x(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  ASSERT_TRUE(x);
  SSL_CTX_set_min_proto_version(x.get(), TLS1_3_VERSION);
  ASSERT_EQ(SSL_CTX_use_certificate_chain_file(x.get(), cert("client.pem").c_str()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey_file(x.get(), cert("client.key").c_str(), SSL_FILETYPE_PEM), 1);
  ASSERT_EQ(SSL_CTX_load_verify_locations(x.get(), cert("ca.pem").c_str(), nullptr), 1);
  SSL_CTX_set_verify(x.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_session_cache_mode(x.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  static SSL_SESSION* latest = nullptr; // the last ticket (the callback has no other way out)
  SSL_CTX_sess_set_new_cb(x.get(), [](SSL*, SSL_SESSION* t) {
    if (latest) SSL_SESSION_free(latest);
    latest = t;
    return 1;
  });
  const std::string hello = [&] {
    detail::protocol::hello h;
    h.name = name.name();
    h.max_message = 1 << 20;
    return detail::protocol::encode_hello(h);
  }();
  // One connect offering `offer` (if any), through the npipe hello and its
  // reply (so the ticket, sent before the reply, has been read); whether
  // the handshake resumed, or -1 if something failed.
  auto connect_once = [&](SSL_SESSION* offer) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(gw.port());
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int result = -1;
    SSL* ssl = SSL_new(x.get());
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (offer) SSL_set_session(ssl, offer);
    std::size_t n = 0;
    char reply[detail::protocol::reply_size];
    std::size_t got = 0;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && SSL_connect(ssl) == 1 &&
        SSL_write_ex(ssl, hello.data(), hello.size(), &n) == 1) {
      while (got < sizeof reply && SSL_read_ex(ssl, reply + got, sizeof reply - got, &n) == 1) got += n;
      if (got == sizeof reply) result = SSL_session_reused(ssl) ? 1 : 0;
    }
    SSL_shutdown(ssl);
    SSL_free(ssl);
    ::close(fd);
    return result;
  };
  auto take = [] {
    SSL_SESSION* t = std::exchange(latest, nullptr);
    return std::unique_ptr<SSL_SESSION, decltype(&SSL_SESSION_free)>(t, SSL_SESSION_free);
  };
  ASSERT_EQ(connect_once(nullptr), 0) << "a full handshake";
  const std::time_t a = ::time(nullptr); // the full handshake was at a or a - 1
  auto first = take();
  ASSERT_TRUE(first);
  ASSERT_TRUE(wait_until([a] { return ::time(nullptr) >= a + 3; }, 20s));
  EXPECT_EQ(connect_once(first.get()), 1) << "3-4 s on, the ticket resumes";
  auto renewed = take();
  ASSERT_TRUE(renewed) << "a resumed connection gets a new ticket";
  ASSERT_TRUE(wait_until([a] { return ::time(nullptr) >= a + 7; }, 20s));
  // 7 s or more since the full handshake, 3 or more since the renewal.
  SSL_SESSION_set_time(renewed.get(), static_cast<long>(::time(nullptr)));
  SSL_SESSION_set_timeout(renewed.get(), 3600);
  EXPECT_EQ(connect_once(renewed.get()), 0) << "the gateway declines it: a full handshake";
  EXPECT_EQ(gw.stats().resumed, 1u);
  EXPECT_EQ(gw.stats().tls_failed, 0u);
  take();
}

// A connection holds its TLS context: OpenSSL calls back into it after the
// handshake (a ticket the server sends later, an alert), when the client's
// context cache may have let it go (its files changed, or newer options
// pushed it out). AddressSanitizer caught the freed context read here.
TEST_F(Remote, ALateTicketOnAConnectionWhoseContextTheCacheDroppedIsSafe) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  signal_pipe ticket_now, done;
  std::thread srv([&] {
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> x(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
    SSL_CTX_set_min_proto_version(x.get(), TLS1_3_VERSION);
    SSL_CTX_set_num_tickets(x.get(), 0);
    SSL_CTX_use_certificate_chain_file(x.get(), cert("server.pem").c_str());
    SSL_CTX_use_PrivateKey_file(x.get(), cert("server.key").c_str(), SSL_FILETYPE_PEM);
    SSL* s = SSL_new(x.get());
    SSL_set_fd(s, sv[1]);
    if (SSL_accept(s) == 1 && ticket_now.wait()) {
      SSL_new_session_ticket(s); // after the handshake, as RFC 8446 allows at any time
      std::size_t n = 0;
      SSL_write_ex(s, "x", 1, &n);
      done.wait();
      SSL_shutdown(s);
    }
    SSL_free(s);
  });
  struct finish { // on every way out, a failed assertion's too: the server thread ends, and is joined
    signal_pipe &a, &b;
    std::thread& t;
    int* fds;
    ~finish() {
      a.notify();
      b.notify();
      ::shutdown(fds[1], SHUT_RD); // a server still in its handshake reads the end (its writes still go)
      t.join();
      ::close(fds[0]);
      ::close(fds[1]);
    }
  } end{ticket_now, done, srv, sv};
  ASSERT_EQ(::fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
  const std::string ca = dir_ + "/ca.pem";
  auto write_ca = [&](const std::string& extra) {
    std::ifstream in(cert("ca.pem"), std::ios::binary);
    std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(ca, std::ios::binary | std::ios::trunc) << body << extra;
  };
  write_ca("");
  tls_options o;
  o.ca_file = ca;
  std::error_code ec;
  auto ctx = detail::tls::context::for_client(o, ec);
  ASSERT_TRUE(ctx) << last_error_detail();
  {
    detail::tls::session s(sv[0], "the test server");
    ASSERT_TRUE(s.start_client(ctx, "localhost", "localhost:1", ec)) << last_error_detail();
    auto step = [&](detail::tls::io r) {
      pollfd p{sv[0], static_cast<short>(r == detail::tls::io::want_write ? POLLOUT : POLLIN), 0};
      return ::poll(&p, 1, 10'000) == 1;
    };
    for (;;) {
      auto r = s.handshake();
      if (r == detail::tls::io::done) break;
      ASSERT_NE(r, detail::tls::io::end) << s.end_detail();
      ASSERT_TRUE(step(r));
    }
    ctx.reset(); // the dial is over: only the connection holds it now
    write_ca("\n"); // the CA file changes: the next dial makes a new context, and the cache drops this one
    auto other = detail::tls::context::for_client(o, ec);
    ASSERT_TRUE(other) << last_error_detail();
    ticket_now.notify();
    std::byte b[16];
    std::size_t n = 0;
    for (;;) {
      auto r = s.read(b, sizeof b, n);
      if (r == detail::tls::io::done) break;
      ASSERT_NE(r, detail::tls::io::end) << s.end_detail();
      ASSERT_TRUE(step(r));
    }
    EXPECT_EQ(n, 1u);
  }
}

// A client keeps its TLS context between connects (building one is most of
// its handshake's cost), but not past a change to the files it was built
// from: a CA file replaced (a rename over it) or rewritten in place, or a
// client certificate swapped, is read again by the next connect.
TEST_F(Remote, AClientRereadsItsTlsFilesWhenTheyChangeBetweenConnects) {
  auto name = random_pipe();
  counting_echo echo(name);
  auto gw = start_gateway(gateway_certs_only());
  auto copy = [](const std::string& from, const std::string& to, bool in_place) {
    std::ifstream in(from, std::ios::binary);
    std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string target = in_place ? to : to + ".new";
    { std::ofstream(target, std::ios::binary | std::ios::trunc) << body; }
    if (!in_place) ASSERT_EQ(::rename(target.c_str(), to.c_str()), 0);
  };
  const std::string ca = dir_ + "/ca.pem", crt = dir_ + "/client.pem", key = dir_ + "/client.key";
  copy(cert("ca.pem"), ca, false);
  copy(cert("client.pem"), crt, false);
  copy(cert("client.key"), key, false);
  client_options co;
  co.tls = with({{"ca", ca}, {"cert", crt}, {"key", key}});
  auto where = remote_name("127.0.0.1", gw.port(), name);
  auto works = [&] {
    std::error_code ec;
    auto c = connect(where, co, 10s, ec);
    if (ec) return ec;
    auto r = c.transact("hello", 10s, ec);
    EXPECT_TRUE(ec || r == "hello");
    return ec;
  };
  std::error_code ec = works();
  ASSERT_FALSE(ec) << ec.message() << " / " << last_error_detail();
  EXPECT_FALSE(works()) << "the same files again";
  // Another CA, renamed over the file: the gateway's certificate no longer verifies.
  copy(cert("other/ca.pem"), ca, false);
  ec = works();
  EXPECT_EQ(ec, errc::access_denied);
  EXPECT_NE(last_error_detail().find("failed verification"), std::string::npos) << last_error_detail();
  // The right CA back, written into the same file.
  copy(cert("ca.pem"), ca, true);
  EXPECT_FALSE(works()) << last_error_detail();
  // A client certificate of the other CA, written in place: the gateway refuses it.
  copy(cert("other/client.pem"), crt, true);
  copy(cert("other/client.key"), key, true);
  ec = works();
  EXPECT_EQ(ec, errc::access_denied);
  EXPECT_NE(last_error_detail().find("unknown ca"), std::string::npos) << last_error_detail();
  // A file that is gone fails the connect with its name, not with a context kept from before.
  copy(cert("client.pem"), crt, true);
  copy(cert("client.key"), key, true);
  EXPECT_FALSE(works()) << last_error_detail();
  ASSERT_EQ(::unlink(ca.c_str()), 0);
  ec = works();
  EXPECT_EQ(ec, errc::invalid_argument);
  EXPECT_NE(last_error_detail().find(ca), std::string::npos) << last_error_detail();
  // A key given as a pipe, as a shell's <(...) gives it, can be read once:
  // OpenSSL reads it, nothing before it does, and no context is kept.
  copy(cert("ca.pem"), ca, false);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  {
    std::ifstream in(cert("client.key"), std::ios::binary);
    std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_EQ(::write(p[1], body.data(), body.size()), static_cast<ssize_t>(body.size()));
    ::close(p[1]);
  }
  co.tls.key_file = "/dev/fd/" + std::to_string(p[0]);
  ec = works();
  EXPECT_FALSE(ec) << ec.message() << " / " << last_error_detail();
  ::close(p[0]);
}

TEST_F(Remote, TheAsyncClientReachesRemotePipesWithTheSameSemantics) {
  auto name = random_pipe();
  counting_echo echo(name);
  auto gw = start_gateway(gateway_certs_and_psk());
  net::io_context ctx;
  auto work = net::make_work_guard(ctx);
  std::thread io([&] { ctx.run(); });
  for (auto tls : {client_certs(), client_psk()}) {
    client_options co;
    co.tls = tls;
    async_connection c(ctx);
    {
      auto [h, f] = outcome<>();
      c.async_connect(remote_name("127.0.0.1", gw.port(), name), co, 5s, h);
      auto [ec] = f.get();
      ASSERT_FALSE(ec) << ec.message() << " / " << last_error_detail();
    }
    {
      auto [h, f] = outcome<std::vector<std::byte>>();
      std::string req = "async over tls";
      c.async_transact(net::buffer(req), 5s, h);
      auto [ec, reply] = f.get();
      EXPECT_FALSE(ec) << ec.message();
      EXPECT_EQ(text(reply), req);
    }
    { // a message bigger than the buffer: "more data", then the rest, intact
      auto big = pattern(200'000, 9);
      auto [sh, sf] = outcome<std::size_t>();
      c.async_send(net::buffer(big), 5s, sh);
      EXPECT_FALSE(std::get<0>(sf.get()));
      std::vector<std::byte> got, buf(70'000);
      for (;;) {
        auto [h, f] = outcome<read_result>();
        c.async_read_some(net::buffer(buf), 5s, h);
        auto [ec, r] = f.get();
        ASSERT_FALSE(ec) << ec.message();
        got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(r.bytes));
        if (!r.more_data) break;
      }
      EXPECT_TRUE(got == big);
    }
    c.close();
  }
  // The same errors as the blocking client.
  {
    client_options co;
    co.tls.insecure = true;
    async_connection c(ctx);
    auto [h, f] = outcome<>();
    c.async_connect(remote_name("127.0.0.1", gw.port(), name), co, 5s, h);
    auto [ec] = f.get();
    EXPECT_EQ(ec, errc::access_denied);
  }
  {
    client_options co;
    co.tls = with({{"ca", cert("ca.pem")}});
    async_connection c(ctx);
    std::promise<std::pair<async_error_code, std::string>> p; // the detail is per thread: read it in the handler
    c.async_connect(remote_name("127.0.0.1", gw.port(), name), co, 5s,
                    [&p](async_error_code ec) { p.set_value({ec, last_error_detail()}); });
    auto [ec, detail] = p.get_future().get();
    EXPECT_EQ(ec, errc::access_denied) << ec.message();
    EXPECT_NE(detail.find("certificate required"), std::string::npos) << detail;
  }
  {
    auto port = gw.port();
    gw.close();
    client_options co;
    co.tls = client_psk();
    async_connection c(ctx);
    auto [h, f] = outcome<>();
    c.async_connect(remote_name("127.0.0.1", port, name), co, 5s, h);
    auto [ec] = f.get();
    EXPECT_EQ(ec, errc::not_found);
  }
  work.reset();
  ctx.stop();
  io.join();
  EXPECT_EQ(echo.accepted(), 2);
}

// ------------------------------------------ the async client's direct link

// An io_context with one thread, for the async rows.
struct io_thread {
  net::io_context ctx;
  net::executor_work_guard<net::io_context::executor_type> work = net::make_work_guard(ctx);
  std::thread t{[this] { ctx.run(); }};
  ~io_thread() {
    work.reset();
    ctx.stop();
    t.join();
  }
};

async_error_code async_open(async_connection& c, const pipe_name& remote, client_options co) {
  auto [h, f] = outcome<>();
  c.async_connect(remote, co, 10s, h);
  return std::get<0>(f.get());
}

// A server that takes remote clients (the end `sc`), a gateway, and an
// async client `c` connected to it through the gateway.
struct async_remote_pair {
  explicit async_remote_pair(std::size_t max_message = defaults::max_message_size, tls_options tls = client_psk(),
                             pipe_type type = pipe_type::message) {
    server_options so;
    so.accept_remote = true;
    so.type = type;
    so.max_message_size = max_message;
    srv.open(name, so);
    gw.emplace(start_gateway(gateway_certs_and_psk()));
    port = gw->port();
    client_options co;
    co.tls = std::move(tls);
    co.max_message_size = max_message;
    auto ec = async_open(c, remote_name("127.0.0.1", port, name), co);
    EXPECT_FALSE(ec) << ec.message() << ": " << last_error_detail();
    if (!ec) sc = srv.accept(10s);
  }
  ~async_remote_pair() { c.close(); }
  bool connected() const { return sc.is_open(); }

  pipe_name name = random_pipe();
  server srv;
  std::optional<gateway> gw;
  std::uint16_t port = 0;
  io_thread io;
  async_connection c{io.ctx};
  connection sc;
};

// The TLS record is 16 KiB and the client writes a header and the start of
// a message as one record: sizes on either side of a record, and many.
TEST_F(Remote, AsyncMessagesAroundTheTlsRecordSizeArriveIntactBothWays) {
  auto name = random_pipe();
  server_options so;
  so.max_message_size = 2u << 20;
  counting_echo echo(name, so);
  auto gw = start_gateway(gateway_certs_and_psk());
  io_thread io;
  client_options co;
  co.tls = client_psk();
  co.max_message_size = 2u << 20;
  async_connection c(io.ctx);
  ASSERT_FALSE(async_open(c, remote_name("127.0.0.1", gw.port(), name), co)) << last_error_detail();
  std::uint32_t seed = 1;
  for (std::size_t n : {std::size_t{16383}, std::size_t{16384}, std::size_t{16385}, std::size_t{65536},
                        std::size_t{1} << 20}) {
    auto msg = pattern(n, seed++);
    auto [sh, sf] = outcome<std::size_t>();
    c.async_send(net::buffer(msg), 20s, sh);
    auto [rh, rf] = outcome<std::vector<std::byte>>();
    c.async_receive(20s, rh);
    auto [sec, sent] = sf.get();
    EXPECT_FALSE(sec) << n << ": " << sec.message();
    EXPECT_EQ(sent, n);
    auto [rec, back] = rf.get();
    ASSERT_FALSE(rec) << n << ": " << rec.message();
    EXPECT_TRUE(back == msg) << n << " bytes came back as " << back.size();
  }
  // Back to back, so records of the next messages wait inside OpenSSL (which
  // the socket's readiness cannot show) while the client takes one.
  std::vector<std::vector<std::byte>> sent;
  for (std::size_t i = 0; i < 300; ++i) {
    sent.push_back(pattern(i % 3 ? 1000 : 16385, seed++));
    c.async_send(net::buffer(sent.back()), 20s, [](async_error_code, std::size_t) {});
  }
  for (std::size_t i = 0; i < sent.size(); ++i) {
    auto [rh, rf] = outcome<std::vector<std::byte>>();
    c.async_receive(20s, rh);
    auto [rec, back] = rf.get();
    ASSERT_FALSE(rec) << "message " << i << ": " << rec.message();
    ASSERT_TRUE(back == sent[i]) << "message " << i;
  }
  c.close();
}

// What 127.0.0.1:`port`'s peers have in their receive queues, most of any
// (/proc/net/tcp): a client's TCP socket to a gateway.
std::size_t rx_queued_from(std::uint16_t port) {
  std::ifstream f("/proc/net/tcp");
  std::string line;
  std::getline(f, line);
  std::size_t most = 0;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string sl, local, rem, st, queues;
    in >> sl >> local >> rem >> st >> queues;
    if (rem.size() < 5 || std::stoul(rem.substr(rem.size() - 4), nullptr, 16) != port) continue;
    most = std::max<std::size_t>(most, std::stoul(queues.substr(queues.find(':') + 1), nullptr, 16));
  }
  return most;
}

TEST_F(Remote, AnAsyncReceiveNamesTheGatewayWhenItIsLostMidMessage) {
  async_remote_pair r(128u << 20);
  ASSERT_TRUE(r.connected());
  auto& c = r.c;
  auto& sc = r.sc;
  const auto port = r.port;
  std::promise<std::pair<async_error_code, std::string>> got;
  c.async_receive(60s, [&](async_error_code ec, std::vector<std::byte>) { got.set_value({ec, last_error_detail()}); });
  // Hold the client's I/O thread: the message piles up in the buffers on the way.
  std::promise<void> hold;
  std::atomic<bool> held{false};
  net::post(r.io.ctx, [&, f = hold.get_future().share()] {
    held = true;
    f.wait();
  });
  ASSERT_TRUE(wait_until([&] { return held.load(); }));
  auto big = pattern(64u << 20, 5); // made before anything waits on a deadline
  std::thread writer([&] {
    std::error_code ec;
    sc.write(big, 60s, ec); // fails once the gateway is gone
  });
  // Enough of the message at the client (many TLS records, so its header too) to be cut in its middle.
  EXPECT_TRUE(wait_until([&] { return rx_queued_from(port) > (64u << 10); })) << rx_queued_from(port);
  r.gw.reset(); // its sockets close
  hold.set_value();
  auto [ec, detail] = got.get_future().get();
  writer.join();
  EXPECT_EQ(ec, errc::broken_pipe) << ec.message();
  EXPECT_NE(detail.find("the gateway at 127.0.0.1:" + std::to_string(port)), std::string::npos) << detail;
  EXPECT_NE(detail.find("middle of a message"), std::string::npos) << detail;
}

// A peer learns that everything it sent was consumed from a receipt the
// client sends once it has read it all, even if it then does nothing at all
// (the receipt is deferred to ride with a next write that never comes). A
// plaintext "gateway" by hand, which sends no flush frame: only the receipt
// can answer.
TEST_F(Remote, AnIdleAsyncClientStillSendsItsReceiptForEverythingItRead) {
  sockaddr_in a{};
  int ls = loopback_listener(a, 4);
  ASSERT_GE(ls, 0);
  io_thread io;
  client_options co;
  co.tls.insecure = true;
  async_connection c(io.ctx);
  auto [ch, cf] = outcome<>();
  c.async_connect(remote_name("127.0.0.1", ntohs(a.sin_port), pipe_name("\\\\.\\pipe\\raw")), co, 10s, ch);
  int fd = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(fd, 0);
  timeval tv{10, 0}; // every recv below is bounded
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::vector<std::byte> in(4096);
  std::size_t have = 0, used = 0;
  detail::protocol::hello hello;
  for (std::error_code ec;;) {
    ssize_t n = ::recv(fd, in.data() + have, in.size() - have, 0);
    ASSERT_GT(n, 0) << "no hello";
    have += static_cast<std::size_t>(n);
    auto st = detail::protocol::decode_hello(std::span(in.data(), have), hello, used, ec);
    ASSERT_NE(st, detail::protocol::decode_status::error) << ec.message();
    if (st == detail::protocol::decode_status::done) break;
  }
  detail::protocol::reply rep;
  rep.max_message = 1 << 20;
  auto r = detail::protocol::encode_reply(rep);
  ASSERT_EQ(::send(fd, r.data(), r.size(), MSG_NOSIGNAL), static_cast<ssize_t>(r.size()));
  ASSERT_FALSE(std::get<0>(cf.get())) << last_error_detail();
  auto [rh, rf] = outcome<std::vector<std::byte>>();
  c.async_receive(10s, rh);
  std::string frame = raw_frame("hello");
  ASSERT_EQ(::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL), static_cast<ssize_t>(frame.size()));
  auto [rec, msg] = rf.get();
  ASSERT_FALSE(rec) << rec.message();
  EXPECT_EQ(text(msg), "hello");
  // The client is idle now; its receipt still comes: everything, 10 bytes.
  std::array<std::byte, detail::protocol::frame_header_size + detail::protocol::consumed_payload> got{};
  std::size_t n = 0;
  while (n < got.size()) {
    ssize_t k = ::recv(fd, got.data() + n, got.size() - n, 0);
    ASSERT_GT(k, 0) << "no receipt from the idle client";
    n += static_cast<std::size_t>(k);
  }
  EXPECT_TRUE(got == detail::protocol::encode_consumed(frame.size()));
  c.close();
  ::close(fd);
  ::close(ls);
}

// The server's write-flush after the async client has read everything and
// gone idle: the flush completes (the client's library answers for it).
TEST_F(Remote, AServersFlushCompletesWhileTheAsyncClientIsIdle) {
  async_remote_pair r(defaults::max_message_size, client_certs());
  ASSERT_TRUE(r.connected());
  auto& c = r.c;
  auto& sc = r.sc;
  auto [rh, rf] = outcome<std::vector<std::byte>>();
  c.async_receive(10s, rh);
  sc.write(bytes("the answer"), 10s);
  auto [rec, msg] = rf.get();
  ASSERT_FALSE(rec) << rec.message();
  EXPECT_EQ(text(msg), "the answer");
  std::error_code fec;
  sc.flush(10s, fec);
  EXPECT_FALSE(fec) << fec.message() << ": " << last_error_detail();
}

// A send that times out queued behind a message TLS cannot get out (the
// server does not read) fails alone: nothing of it went, the connection
// goes on. One that times out while its own bytes are going tears the send
// side, as on a local pipe.
TEST_F(Remote, AnAsyncSendTimingOutBehindBackedUpTlsTearsNothing) {
  async_remote_pair r(128u << 20);
  ASSERT_TRUE(r.connected());
  auto& c = r.c;
  auto& sc = r.sc;
  auto big = pattern(64u << 20, 7); // more than every buffer on the way holds
  auto [bh, bf] = outcome<std::size_t>();
  c.async_send(net::buffer(big), 60s, bh);
  auto [th, tf] = outcome<std::size_t>();
  std::string small = "queued behind it";
  c.async_send(net::buffer(small), 200ms, th); // the time passing is what is tested
  EXPECT_EQ(std::get<0>(tf.get()), errc::timed_out);
  EXPECT_TRUE(c.is_open());
  std::error_code ec;
  auto m = sc.receive(60s, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(m == big);
  EXPECT_FALSE(std::get<0>(bf.get()));
  auto [ah, af] = outcome<std::size_t>();
  std::string after = "after it";
  c.async_send(net::buffer(after), 10s, ah);
  EXPECT_FALSE(std::get<0>(af.get()));
  EXPECT_EQ(text(sc.receive(10s)), after);
  // Now the big one times out while it is being written: the send side is torn.
  auto [xh, xf] = outcome<std::size_t>();
  c.async_send(net::buffer(big), 300ms, xh);
  EXPECT_EQ(std::get<0>(xf.get()), errc::timed_out);
  auto [yh, yf] = outcome<std::size_t>();
  c.async_send(net::buffer(after), 10s, yh);
  EXPECT_EQ(std::get<0>(yf.get()), errc::broken_pipe);
  sc.receive(30s, ec);
  EXPECT_TRUE(ec) << "the server got a torn message whole";
}

// A byte pipe's send goes out as frames of the server's limit (64 KiB
// here). Over TLS, once the way is backed up, the next write waits for the
// socket before OpenSSL takes anything: a deadline then stops it having
// taken nothing of a send whose first frames went earlier. That send has
// begun all the same: it ends timed_out and tears the send side, and the
// server reads a prefix of it, then the end.
TEST_F(Remote, AnAsyncBytePipeSendTimingOutPartWayOverTlsTearsTheSendSide) {
  async_remote_pair r(64u << 10, client_psk(), pipe_type::byte);
  ASSERT_TRUE(r.connected());
  auto big = pattern(64u << 20, 8); // more than every buffer on the way holds
  auto [xh, xf] = outcome<std::size_t>();
  r.c.async_send(net::buffer(big), 1s, xh);
  EXPECT_EQ(std::get<0>(xf.get()), errc::timed_out);
  EXPECT_FALSE(r.c.is_open()) << "part of it went: the send side is broken";
  auto [yh, yf] = outcome<std::size_t>();
  std::string after = "after it";
  r.c.async_send(net::buffer(after), 10s, yh);
  EXPECT_EQ(std::get<0>(yf.get()), errc::broken_pipe);
  std::vector<std::byte> got;
  std::error_code ec;
  for (;;) {
    auto part = r.sc.receive(30s, ec);
    if (ec) break;
    got.insert(got.end(), part.begin(), part.end());
  }
  EXPECT_EQ(ec, errc::broken_pipe) << "the end: " << ec.message();
  EXPECT_GT(got.size(), 0u);
  EXPECT_LT(got.size(), big.size());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), big.begin())) << "a prefix of the send, in order";
}

std::string forwarded_hello(const pipe_name& name) {
  detail::protocol::hello h;
  h.name = name.name();
  h.max_message = 1 << 20;
  h.forwarded = true;
  h.remote_user = "CN=the-boss";
  h.remote_address = "203.0.113.9:1234";
  return detail::protocol::encode_hello(h);
}

detail::protocol::status reply_status(int fd) {
  char buf[detail::protocol::reply_size];
  std::size_t got = 0;
  while (got < sizeof buf) {
    ssize_t n = ::recv(fd, buf + got, sizeof buf - got, 0);
    if (n <= 0) return static_cast<detail::protocol::status>(0xff);
    got += static_cast<std::size_t>(n);
  }
  return static_cast<detail::protocol::status>(buf[5]);
}

TEST_F(Remote, OnlyTheGatewaySideMayVouchForARemoteIdentity) {
  auto name = random_pipe();
  // A remote client claiming to be forwarded is refused by the gateway.
  {
    counting_echo echo(name);
    auto gw = start_gateway(with({{"insecure", ""}}));
    int fd = raw_tcp_connect("127.0.0.1", gw.port());
    ASSERT_GE(fd, 0);
    auto h = forwarded_hello(name);
    ASSERT_EQ(::send(fd, h.data(), h.size(), MSG_NOSIGNAL), static_cast<ssize_t>(h.size()));
    EXPECT_EQ(reply_status(fd), detail::protocol::status::protocol_error);
    ::close(fd);
    EXPECT_EQ(echo.accepted(), 0);
  }
  // A local process forging a forwarded hello at a server that does not accept remote clients.
  {
    server s(name);
    int fd = raw_connect(s.native_path());
    ASSERT_GE(fd, 0);
    auto h = forwarded_hello(name);
    ASSERT_EQ(::send(fd, h.data(), h.size(), MSG_NOSIGNAL), static_cast<ssize_t>(h.size()));
    EXPECT_EQ(reply_status(fd), detail::protocol::status::access_denied);
    ::close(fd);
  }
  // Another user forging one at a server that does: only our user or root may vouch.
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to forge as another user";
  auto shared = random_pipe();
  server_options o;
  o.accept_remote = true;
  o.access = access_policy::everyone();
  server s(shared, o);
  // Everything the child needs is made before fork(): after it, only system calls.
  const std::string path = s.native_path();
  const std::string h = forwarded_hello(shared);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    int rc = 1;
    if (::setgid(65534) == 0 && ::setuid(65534) == 0) {
      int fd = raw_connect(path);
      if (fd >= 0 && ::send(fd, h.data(), h.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(h.size()))
        rc = reply_status(fd) == detail::protocol::status::access_denied ? 0 : 1;
    } else {
      rc = 77;
    }
    char b = static_cast<char>(rc);
    (void)!::write(pipefd[1], &b, 1);
    ::_exit(rc);
  }
  ::close(pipefd[1]);
  char b = 99;
  ASSERT_EQ(::read(pipefd[0], &b, 1), 1);
  ::close(pipefd[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  EXPECT_EQ(b, 0) << "a forwarded hello from uid 65534 must be refused";
}

// ------------------------------------------------- peers that misbehave

TEST_F(Remote, AClientKilledMidMessageIsAnErrorNeverAMessage) {
  cert_dir(); // made before forking
  auto name = random_pipe();
  std::uint16_t port = free_tcp_port();
  signal_pipe writing;
  gated_child sender([&] {
    auto big = pattern(64u << 20, 3); // made before the parent's deadline starts
    client_options co;
    co.tls = client_psk();
    auto c = connect(remote_name("127.0.0.1", port, name), co, 10s);
    writing.notify();
    c.write(big, 60s); // killed long before this completes
    return 0;
  });
  server_options so;
  so.accept_remote = true;
  so.max_message_size = 128u << 20;
  server srv(name, so);
  auto g = loopback_gateway(gateway_certs_and_psk());
  g.port = port;
  gateway gw(g);
  sender.start();
  auto c = srv.accept(20s);
  ASSERT_TRUE(writing.wait());
  std::vector<std::byte> buf(64 << 10);
  std::error_code ec;
  auto r = c.read(buf, 20s, ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(r.more_data) << "the start of the 64 MiB message";
  sender.kill(SIGKILL);
  sender.wait();
  std::size_t got = r.bytes;
  for (;;) {
    r = c.read(buf, 20s, ec);
    got += r.bytes;
    if (ec || !r.more_data) break;
  }
  EXPECT_EQ(ec, errc::broken_pipe) << ec.message() << " after " << got << " bytes";
  EXPECT_LT(got, 64u << 20);
}

TEST_F(Remote, SilentPeersAreDroppedByTheHandshakeAndIdleTimeouts) {
  auto name = random_pipe();
  counting_echo echo(name);
  auto g = loopback_gateway(gateway_certs_and_psk());
  g.handshake_timeout = 300ms;
  g.idle_timeout = 600ms;
  gateway gw(g);

  // Connects and says nothing: dropped at the handshake timeout.
  int fd = raw_tcp_connect("127.0.0.1", gw.port());
  ASSERT_GE(fd, 0);
  auto t0 = std::chrono::steady_clock::now();
  char b;
  EXPECT_EQ(::recv(fd, &b, 1, 0), 0) << "closed by the gateway";
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, 250ms);
  EXPECT_LT(waited, 5s);
  ::close(fd);
  EXPECT_EQ(gw.stats().tls_failed, 1u);

  // A client that keeps talking stays; one that goes quiet is dropped.
  client_options co;
  co.tls = client_psk();
  auto busy = connect(remote_name("127.0.0.1", gw.port(), name), co, 5s);
  auto quiet = connect(remote_name("127.0.0.1", gw.port(), name), co, 5s);
  EXPECT_EQ(quiet.transact("once"), "once");
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(busy.transact("still here"), "still here");
    std::this_thread::sleep_for(200ms); // kept: pacing, busy every 200 ms across the 300 ms idle timeout
  }
  std::error_code ec;
  quiet.receive(5s, ec);
  EXPECT_EQ(ec, errc::broken_pipe) << "idle for longer than the gateway's idle_timeout";
  EXPECT_EQ(busy.transact("and still"), "and still");
  EXPECT_EQ(echo.accepted(), 2);
}

TEST_F(Remote, AClientWaitingForABusyPipeIsNotIdleAndBusyAndWaitWorkRemotely) {
  auto name = random_pipe();
  server_options so;
  so.max_instances = 1;
  counting_echo echo(name, so);
  auto g = loopback_gateway(gateway_certs_and_psk());
  g.idle_timeout = 300ms;
  gateway gw(g);
  client_options co;
  co.tls = client_psk();
  auto remote = remote_name("127.0.0.1", gw.port(), name);
  auto first = connect(remote, co, 5s);
  EXPECT_EQ(first.transact("one"), "one");
  std::error_code ec;
  connect(remote, co, no_wait, ec);
  EXPECT_EQ(ec, errc::pipe_busy) << "no instance free, no wait asked for";
  // A waiter quiet for longer than the idle timeout gets in when the
  // instance frees (the first client keeps busy meanwhile, so it stays).
  auto waiter = std::async(std::launch::async, [&] { return connect(remote, co, 10s); });
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(first.transact("busy"), "busy");
    std::this_thread::sleep_for(100ms); // kept: pacing, the waiter stays quiet past the idle timeout
  }
  EXPECT_EQ(waiter.wait_for(0s), std::future_status::timeout) << "still waiting, not dropped as idle";
  first.close();
  auto second = waiter.get();
  EXPECT_EQ(second.transact("two"), "two");
  // Once admitted, the idle timeout applies: the receive waits for it.
  second.receive(5s, ec);
  EXPECT_EQ(ec, errc::broken_pipe) << "idle after its answer";
}

// max_connections counts authenticated clients only: idle TCP connections
// do not take their places, and the client over the cap is told at once
// (and, willing to wait, gets in when one leaves).
TEST_F(Remote, TheGatewaysConnectionCapCountsAuthenticatedClientsAndTellsTheNextAtOnce) {
  auto name = random_pipe();
  counting_echo echo(name);
  auto g = loopback_gateway(gateway_certs_and_psk());
  g.max_connections = 2;
  gateway gw(g);
  std::vector<int> idle;
  for (int i = 0; i < 5; ++i) idle.push_back(raw_tcp_connect("127.0.0.1", gw.port()));
  client_options co;
  co.tls = client_psk();
  auto remote = remote_name("127.0.0.1", gw.port(), name);
  auto a = connect(remote, co, 5s), b = connect(remote, co, 5s);
  EXPECT_EQ(a.transact("one"), "one") << "idle unauthenticated connections do not take an authenticated place";
  EXPECT_EQ(b.transact("two"), "two");
  auto t0 = std::chrono::steady_clock::now();
  std::error_code ec;
  connect(remote, co, no_wait, ec);
  EXPECT_EQ(ec, errc::pipe_busy) << ec.message();
  EXPECT_NE(last_error_detail().find("max_connections"), std::string::npos) << last_error_detail();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << "at once, not at a timeout";
  // Willing to wait, the next client gets in when one leaves.
  auto waiter = std::async(std::launch::async, [&] { return connect(remote, co, 10s); });
  EXPECT_EQ(waiter.wait_for(300ms), std::future_status::timeout) << "still trying while both places are taken";
  a.close();
  auto c = waiter.get();
  EXPECT_EQ(c.transact("room again"), "room again");
  for (int fd : idle) ::close(fd);
}

// 1,000 idle TCP connections from one address (no credentials needed) do
// not keep a client at another address out: unauthenticated connections
// have their own small budget, per address too, and the oldest of the
// address holding the most is dropped for a newcomer.
TEST_F(Remote, UnauthenticatedConnectionsFromOneAddressDoNotDelayAClientAtAnother) {
  watchdog(180);
  ASSERT_TRUE(raise_fd_limit(2500));
  auto name = random_pipe();
  counting_echo echo(name);
  auto g = loopback_gateway(gateway_certs_and_psk());
  g.max_connections = 100; // as the attack was first tried: 300 idle connections locked it
  gateway gw(g);
  const std::uint16_t port = gw.port();
  // The attacker: 1,000 connections from 127.0.0.2 that never speak, each
  // reopened as soon as the gateway lets it go.
  auto open_one = [port] {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.2", &src.sin_addr);
    ::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src);
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    ::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst);
    return fd;
  };
  std::atomic<bool> stop{false}, holding{false};
  std::atomic<std::uint64_t> reopened{0};
  std::thread attacker([&] {
    std::vector<int> fds;
    for (int i = 0; i < 1000; ++i) fds.push_back(open_one());
    holding = true;
    std::vector<pollfd> pf(fds.size());
    while (!stop) {
      for (std::size_t i = 0; i < fds.size(); ++i) pf[i] = {fds[i], POLLIN, 0};
      ::poll(pf.data(), pf.size(), 20);
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ::close(fds[i]);
        fds[i] = open_one();
        ++reopened;
      }
    }
    for (int fd : fds) ::close(fd);
  });
  ASSERT_TRUE(wait_until([&] { return holding.load(); }, 10s));
  client_options co;
  co.tls = client_psk();
  auto remote = remote_name("127.0.0.1", port, name);
  auto calls = time_calls(latency_calls, [&](std::error_code& ec) {
    return text(call(remote, bytes("legit"), 5s, ec, co)) == "legit";
  });
  stop = true;
  attacker.join();
  auto st = gw.stats();
  std::printf("[ hostile ] 1000 idle TCP connections from 127.0.0.2 (%llu reopened): %d TLS calls from 127.0.0.1, "
              "p50 %.2f ms, p99 %.2f ms, max %.2f ms; gateway dropped %llu unauthenticated\n",
              static_cast<unsigned long long>(reopened.load()), latency_calls, calls.p50(), calls.p99(), calls.max(),
              static_cast<unsigned long long>(st.dropped));
  EXPECT_EQ(calls.failures, 0) << calls.first_failure;
  EXPECT_LT(calls.p99(), 2000.0) << "p99 of the legitimate client's calls";
  EXPECT_GT(st.dropped, 0u);
}

// ------------------------------------------------------------- the CLI

std::string npipe_cli() { return NPIPE_CLI_PATH; }

// `npipe serve --remote` in a child; returns when it listens, with its port.
class cli_server {
public:
  explicit cli_server(std::vector<std::string> args, std::vector<std::string> prefix = {}) {
    int out[2];
    EXPECT_EQ(::pipe(out), 0);
    std::vector<std::string> argv = prefix;
    argv.push_back(npipe_cli());
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(s.data());
      a.push_back(nullptr);
      ::execvp(a[0], a.data());
      ::_exit(127);
    }
    ::close(out[1]);
    out_ = ::fdopen(out[0], "r");
    char line[512];
    while (std::fgets(line, sizeof line, out_)) {
      std::string l = line;
      text_ += l;
      if (auto at = l.find("Remote access on port "); at != std::string::npos) {
        port_ = static_cast<std::uint16_t>(std::stoi(l.substr(at + 22)));
        break;
      }
    }
  }
  ~cli_server() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
    if (out_) std::fclose(out_);
  }
  std::uint16_t port() const { return port_; }
  const std::string& text() const { return text_; }

private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  std::uint16_t port_ = 0;
  std::string text_;
};

TEST_F(Remote, SeedDemoOverTlsWithTheCli) {
  auto name = random_name("seed");
  cli_server srv({"serve", name, "--remote", "--listen", "127.0.0.1", "--port", "0", "--psk-file", cert("psk.txt"),
                  "--ca", cert("ca.pem"), "--cert", cert("server.pem"), "--key", cert("server.key")});
  ASSERT_NE(srv.port(), 0) << srv.text();
  std::string remote = "\\\\127.0.0.1:" + std::to_string(srv.port()) + "\\pipe\\" + name;
  auto r = run({npipe_cli(), "send", remote, "hello", "--psk-file", cert("psk.txt")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Response received: [npipe ", 0), 0u) << r.out;
  r = run({npipe_cli(), "send", remote, "hello", "--ca", cert("ca.pem"), "--cert", cert("client.pem"), "--key",
           cert("client.key")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Response received: [npipe ", 0), 0u) << r.out;
  r = run({npipe_cli(), "send", remote, "hello", "--ca", cert("ca.pem")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("certificate required"), std::string::npos) << r.err;
}

// Two hosts: the server in one network namespace, the client in another,
// joined by a veth pair; the exact commands of the README.
TEST_F(Remote, TwoHostsInTwoNetworkNamespaces) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to make network namespaces (ip netns)";
  if (run({"ip", "-V"}).exit_code != 0) GTEST_SKIP() << "needs the ip command (iproute2)";
  std::string tag = std::to_string(::getpid() % 100000);
  std::string ns_srv = "npipe-srv-" + tag, ns_cli = "npipe-cli-" + tag;
  std::string veth_a = "npv" + tag + "a", veth_b = "npv" + tag + "b";
  int octet = 1 + ::getpid() % 250;
  std::string net = "10.213." + std::to_string(octet) + ".";
  struct cleanup {
    std::string a, b;
    ~cleanup() {
      run({"ip", "netns", "del", a});
      run({"ip", "netns", "del", b});
    }
  } done{ns_srv, ns_cli};
  for (auto& cmd : std::vector<std::vector<std::string>>{
           {"ip", "netns", "add", ns_srv},
           {"ip", "netns", "add", ns_cli},
           {"ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b},
           {"ip", "link", "set", veth_a, "netns", ns_srv},
           {"ip", "link", "set", veth_b, "netns", ns_cli},
           {"ip", "-n", ns_srv, "addr", "add", net + "1/24", "dev", veth_a},
           {"ip", "-n", ns_cli, "addr", "add", net + "2/24", "dev", veth_b},
           {"ip", "-n", ns_srv, "link", "set", veth_a, "up"},
           {"ip", "-n", ns_cli, "link", "set", veth_b, "up"},
           {"ip", "-n", ns_srv, "link", "set", "lo", "up"},
       }) {
    auto r = run(cmd);
    if (r.exit_code != 0) GTEST_SKIP() << "cannot set up network namespaces here: " << r.err;
  }
  // The default port, as the README's command uses it.
  cli_server srv({"serve", "tpipe", "--remote", "--listen", net + "1", "--psk-file", cert("psk.txt")},
                 {"ip", "netns", "exec", ns_srv});
  ASSERT_EQ(srv.port(), default_remote_port) << srv.text();
  auto r = run({"ip", "netns", "exec", ns_cli, npipe_cli(), "send", "\\\\" + net + "1\\pipe\\tpipe", "hello",
                "--psk-file", cert("psk.txt")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Response received: [npipe ", 0), 0u) << r.out;
  // The server's address is not reachable from a third namespace without the link.
  r = run({"ip", "netns", "exec", ns_srv, npipe_cli(), "send", "\\\\" + net + "2\\pipe\\tpipe", "hello", "-t", "2000",
           "--psk-file", cert("psk.txt")});
  EXPECT_NE(r.exit_code, 0) << "nothing listens on the client's side";
}

} // namespace
