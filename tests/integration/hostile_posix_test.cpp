// SPDX-License-Identifier: MIT
// Hostile peers against a local server, each test one property that must
// hold whatever a client the access policy admits does: memory it can make
// the server hold is bounded by what it sent plus a small allowance, an
// allocation it causes that fails ends only its own connection, a
// half-closed peer gets its replies, and one user's silent connections do
// not lock out another user. The peers speak npipe's wire format by hand
// (docs/protocol.md). Servers whose memory is measured run in their own
// process, read off /proc.

#include "raw_peer.hpp"
#include "test_support.hpp"

#include "runtime/async_pipe.hpp"

#include <npipe/async.hpp>
#include <npipe/npipe.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(io_context.hpp)
#include NPIPE_NET_HEADER(thread_pool.hpp)

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <linux/sockios.h>

using namespace std::chrono_literals;
using namespace npipe;
using namespace npipe::test;

namespace {

using Hostile = local_test;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true; // their allocators reserve far more address space than they use
#else
constexpr bool sanitized = false;
#endif

// A data frame header announcing `length` bytes (and nothing after it).
std::string header(std::uint32_t length, char type = '\x01') {
  std::string h(1, type);
  for (int i = 0; i < 4; ++i) h += static_cast<char>(length >> (8 * i));
  return h;
}

// Bytes we wrote that the server has not read yet (a Unix stream socket
// charges them to the sender until the receiver reads them).
int unread_by_server(int fd) {
  int n = -1;
  return ::ioctl(fd, SIOCOUTQ, &n) == 0 ? n : -1;
}

// Waits until the server has read everything sent on each of `fds`.
bool server_read_all(const std::vector<int>& fds, std::chrono::milliseconds limit = 20s) {
  return wait_until([&] {
    return std::all_of(fds.begin(), fds.end(), [](int fd) { return unread_by_server(fd) == 0; });
  }, limit);
}

// An async echo server in its own process, so its memory can be measured
// and its death seen. Forked at construction (before this process starts
// threads); serves after start() until stop(); exit code 0 if it lived.
class server_process {
public:
  server_process(pipe_name name, async_server_options opts, rlim_t address_space = 0)
      : child_([this, name, opts, address_space] {
          if (address_space) {
            rlimit r{address_space, address_space};
            if (::setrlimit(RLIMIT_AS, &r) != 0) return 90;
          }
          net::io_context ctx;
          auto work = net::make_work_guard(ctx);
          std::error_code ec;
          async_server srv(ctx.get_executor());
          srv.open(name, opts, ec);
          if (ec) return 91;
          srv.serve([](request r) { return r.take(); });
          std::thread t1([&] { ctx.run(); }), t2([&] { ctx.run(); });
          ready_.notify();
          done_.wait(std::chrono::seconds(300));
          srv.stop(1s);
          ctx.stop();
          t1.join();
          t2.join();
          return 0;
        }) {}
  void start() {
    child_.start();
    ASSERT_TRUE(ready_.wait(30s)) << "the server process did not start";
  }
  int pid() const { return child_.pid(); }
  long rss() const { return rss_kib(child_.pid()); }
  int stop() {
    done_.notify();
    return child_.wait();
  }

private:
  signal_pipe ready_, done_; // declared before child_: it uses them
  gated_child child_;
};

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// ------------------------------------------------ memory a peer can pin

// 1,024 clients each send only a maximal frame header (32 MiB): the server
// grows a message's buffer as its bytes arrive, so the headers cost it
// (almost) nothing. Then, under a 1 GiB address-space limit, clients that
// really send tens of MiB each exhaust it: the allocations that fail end
// those connections only, and the server serves on.
TEST_F(Hostile, FrameHeadersCommitNothingAndAFailedAllocationEndsOnlyItsPeer) {
  watchdog(240);
  constexpr int attackers = 1024;
  ASSERT_TRUE(raise_fd_limit(attackers + 256));
  auto name = random_pipe("hdr");
  server_options o;
  o.max_connections = attackers + 64;
  server_process srv(name, o, sanitized ? 0 : rlim_t(1) << 30);
  srv.start();
  std::error_code ec;
  std::string path = local_path(name, ec);
  ASSERT_EQ(call(name, bytes("warm up"), 5s, ec).size(), 7u) << ec.message() << ": " << last_error_detail();
  long before = srv.rss();

  std::vector<int> fds;
  std::string hdr = header(32u << 20);
  for (int i = 0; i < attackers; ++i) {
    int fd = raw_session(path, raw_hello(name));
    ASSERT_GE(fd, 0) << "attacker " << i << " could not connect";
    ASSERT_TRUE(send_all(fd, hdr));
    fds.push_back(fd);
  }
  ASSERT_TRUE(server_read_all(fds)) << "the server did not read the headers";
  long after = srv.rss();
  std::printf("[ hostile ] %d connections announcing 32 MiB each: server RSS %ld -> %ld KiB (+%ld KiB)\n", attackers,
              before, after, after - before);
  EXPECT_LT(after - before, 64 << 10) << "the headers alone made the server commit memory";
  EXPECT_EQ(call(name, bytes("still here"), 5s, ec).size(), 10u) << ec.message();

  if (!sanitized) {
    // 40 x 31 MiB of real payload against a 1 GiB address space.
    constexpr int heavy = 40;
    constexpr std::size_t each = 31u << 20;
    std::vector<int> big;
    for (int i = 0; i < heavy; ++i) {
      int fd = raw_session(path, raw_hello(name));
      ASSERT_GE(fd, 0);
      ASSERT_TRUE(send_all(fd, hdr));
      big.push_back(fd);
    }
    std::vector<std::size_t> sent(heavy, 0);
    std::vector<bool> cut(heavy, false);
    std::string chunk(256 << 10, 'x');
    auto until = std::chrono::steady_clock::now() + 120s;
    for (bool busy = true; busy && std::chrono::steady_clock::now() < until;) {
      busy = false;
      for (int i = 0; i < heavy; ++i) {
        if (cut[i] || sent[i] >= each) continue;
        busy = true;
        ssize_t n = ::send(big[i], chunk.data(), std::min(chunk.size(), each - sent[i]), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) sent[i] += static_cast<std::size_t>(n);
        else if (n < 0 && errno != EAGAIN) cut[i] = true; // the server closed it
      }
      if (busy) {
        std::vector<pollfd> pf;
        for (int i = 0; i < heavy; ++i)
          if (!cut[i] && sent[i] < each) pf.push_back({big[i], POLLOUT, 0});
        ::poll(pf.data(), pf.size(), 100);
      }
    }
    int closed = static_cast<int>(std::count(cut.begin(), cut.end(), true));
    std::printf("[ hostile ] %d clients sending 31 MiB each under a 1 GiB address space: %d closed by the server\n",
                heavy, closed);
    EXPECT_GT(closed, 0) << "the address-space limit never bit: the test proves nothing";
    EXPECT_LT(closed, heavy);
    EXPECT_EQ(call(name, bytes("served on"), 5s, ec).size(), 9u) << ec.message() << ": " << last_error_detail();
    for (int fd : big) ::close(fd);
  }
  for (int fd : fds) ::close(fd);
  EXPECT_EQ(srv.stop(), 0) << "the server process died";
}

// The blocking receive() grows its buffer as the message arrives too.
TEST_F(Hostile, BlockingReceiveCommitsNothingAHeaderAnnounces) {
  auto name = random_pipe("bhdr");
  server s(name);
  constexpr int n = 64;
  std::vector<int> fds;
  std::vector<connection> conns;
  for (int i = 0; i < n; ++i) {
    int fd = raw_session(s);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, header(32u << 20) + std::string(100, 'y')));
    fds.push_back(fd);
    conns.push_back(s.accept(5s));
  }
  long before = rss_kib();
  for (auto& c : conns) {
    std::error_code ec;
    auto m = c.receive(20ms, ec);
    EXPECT_EQ(ec, errc::timed_out) << ec.message();
  }
  long after = rss_kib();
  std::printf("[ hostile ] %d blocking receives of announced 32 MiB messages: RSS %ld -> %ld KiB\n", n, before, after);
  EXPECT_LT(after - before, 16 << 10);
  // What did arrive is kept: the rest completes the message.
  auto sender = std::async(std::launch::async, [fd = fds[0]] { return send_all(fd, std::string((32u << 20) - 100, 'z')); });
  std::error_code ec;
  auto m = conns[0].receive(10s, ec);
  EXPECT_TRUE(sender.get());
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(m.size(), std::size_t(32u << 20));
  EXPECT_EQ(static_cast<char>(m[0]), 'y');
  EXPECT_EQ(static_cast<char>(m.back()), 'z');
  for (int fd : fds) ::close(fd);
}

// A client that sends only flush frames and never reads the
// acknowledgements: the server owes it at most max_queued_bytes worth of
// them, stops reading it there, and keeps serving others.
TEST_F(Hostile, AFlushFloodCostsAtMostTheQueuedCap) {
  watchdog(120);
  auto name = random_pipe("flood");
  async_server_options o;
  o.max_queued_bytes = 1 << 20;
  server_process srv(name, o);
  srv.start();
  std::error_code ec;
  std::string path = local_path(name, ec);
  ASSERT_EQ(call(name, bytes("warm up"), 5s, ec).size(), 7u);
  long before = srv.rss();
  int fd = raw_session(path, raw_hello(name));
  ASSERT_GE(fd, 0);
  int rcv = 4096; // and a small receive buffer, so acknowledgements back up quickly
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  std::string flushes;
  for (int i = 0; i < 8192; ++i) flushes += header(0, '\x02');
  std::size_t sent = 0;
  bool stopped = false;
  auto until = std::chrono::steady_clock::now() + 20s;
  while (!stopped && std::chrono::steady_clock::now() < until) {
    std::size_t at = sent % flushes.size(); // a partial send leaves us mid-run: keep frames whole
    ssize_t n = ::send(fd, flushes.data() + at, flushes.size() - at, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (errno != EAGAIN) {
      ADD_FAILURE() << "the server closed the connection: " << std::strerror(errno);
      break;
    }
    pollfd pf{fd, POLLOUT, 0};
    stopped = ::poll(&pf, 1, 1000) == 0; // a second without room: the server has stopped reading us
  }
  long after = srv.rss();
  std::printf("[ hostile ] a client sent %zu MiB of flush frames without reading: server RSS %ld -> %ld KiB\n",
              sent >> 20, before, after);
  EXPECT_TRUE(stopped) << "the server kept reading a client that does not read its acknowledgements";
  // ~1 MiB owed plus a read buffer; the sanitizers' shadow memory counts in RSS too.
  EXPECT_LT(after - before, (sanitized ? 16 : 4) << 10) << "acknowledgements owed grew past the queued-bytes cap";
  EXPECT_EQ(call(name, bytes("others are served"), 5s, ec).size(), 17u) << ec.message();
  ::close(fd);
  EXPECT_EQ(srv.stop(), 0);
}

// A hello declaring a receive limit below the protocol's floor is refused:
// a byte pipe cuts replies into frames of the peer's limit.
TEST_F(Hostile, AHelloWithATinyReceiveLimitIsRefused) {
  auto name = random_pipe("tiny");
  server_options o;
  o.type = pipe_type::byte;
  server s(name, o);
  std::string hello = raw_hello(name);
  hello[12] = 1; // max_message = 1
  hello[13] = hello[14] = hello[15] = 0;
  int fd = raw_connect(s.native_path());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, hello));
  char reply[16];
  ASSERT_EQ(::recv(fd, reply, 16, MSG_WAITALL), 16);
  EXPECT_EQ(reply[5], 5) << "status protocol_error";
  EXPECT_TRUE(closed_by_server(fd));
  ::close(fd);
}

// What a byte-pipe reply queues for a client that does not read costs
// about its payload, whatever limit the client claimed.
TEST_F(Hostile, AQueuedByteReplyCostsAboutItsPayload) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  net::io_context ctx;
  auto work = net::make_work_guard(ctx);
  std::thread t([&] { ctx.run(); });
  auto p = detail::async_pipe::create(ctx.get_executor());
  detail::connection_params params;
  params.type = pipe_type::byte;
  params.mode = read_mode::byte;
  params.peer_max_message = 1; // what a lying hello said before the floor
  std::promise<std::size_t> queued;
  const std::size_t payload = 4u << 20;
  net::dispatch(p->strand(), [&] {
    std::error_code ec;
    ASSERT_TRUE(p->adopt(sv[0], params, ec));
    p->send({}, std::vector<std::byte>(payload), forever, {}, [](std::error_code, std::size_t) {});
    queued.set_value(p->queued_bytes());
  });
  std::size_t q = queued.get_future().get();
  std::printf("[ hostile ] a %zu-byte byte-pipe reply to a client claiming a 1-byte limit queues %zu bytes (%.3fx)\n",
              payload, q, static_cast<double>(q) / payload);
  EXPECT_LE(q, payload + payload / 10);
  net::dispatch(p->strand(), [p] { p->close(); });
  work.reset();
  ::close(sv[1]);
  t.join();
}

// ---------------------------------------------------------- half-close

// The client pipelines 16 requests, then shuts down its sending side and
// reads: every request the server handed to a handler is answered.
std::size_t replies_after_half_close(const std::string& path, const pipe_name& name, int requests) {
  int fd = raw_connect(path);
  if (fd < 0) return 0;
  std::string out = raw_hello(name);
  for (int i = 0; i < requests; ++i) out += raw_frame("request " + std::to_string(i));
  send_all(fd, out);
  ::shutdown(fd, SHUT_WR);
  std::string in;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (in.size() < 16 || in[5] != 0) return 0;
  std::size_t count = 0;
  for (std::size_t pos = 16; pos + 5 <= in.size(); ++count) {
    std::uint32_t len = 0;
    for (int i = 0; i < 4; ++i) len |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[pos + 1 + i])) << (8 * i);
    pos += 5 + len;
  }
  return count;
}

TEST_F(Hostile, AHalfClosedClientGetsEveryReplyFromTheAsyncServer) {
  auto name = random_pipe("half");
  net::io_context ctx;
  auto work = net::make_work_guard(ctx);
  net::thread_pool later(1);
  async_server srv(ctx, name);
  std::mutex mu;
  std::vector<reply> held;
  constexpr int n = 16;
  srv.serve([&](request, reply rp) {
    std::lock_guard lk(mu);
    held.push_back(std::move(rp));
    if (held.size() == n) // all handed out: answer them now, from elsewhere
      net::post(later, [&] {
        std::lock_guard lk2(mu);
        for (auto& r : held) r.send(std::string_view("reply"));
        held.clear();
      });
  });
  std::thread t([&] { ctx.run(); });
  EXPECT_EQ(replies_after_half_close(srv.native_path(), name, n), std::size_t(n));
  srv.stop(2s);
  work.reset();
  t.join();
  later.join();
}

TEST_F(Hostile, AHalfClosedClientGetsEveryReplyFromTheBlockingServer) {
  auto name = random_pipe("bhalf");
  server s(name);
  constexpr int n = 16;
  auto client = std::async(std::launch::async, [&] { return replies_after_half_close(s.native_path(), name, n); });
  auto c = s.accept(10s);
  // One thread reads every request, up to the client's end of stream; only
  // then are the replies written.
  std::vector<std::string> requests;
  for (;;) {
    std::error_code ec;
    auto m = c.receive(10s, ec);
    if (ec) {
      EXPECT_EQ(ec, errc::broken_pipe) << ec.message();
      break;
    }
    requests.push_back(text(m));
  }
  EXPECT_EQ(requests.size(), std::size_t(n));
  for (auto& r : requests) {
    std::error_code ec;
    c.write(bytes("re: " + r), 5s, ec);
    EXPECT_FALSE(ec) << "a reply to a half-closed client: " << ec.message();
  }
  c.close();
  EXPECT_EQ(client.get(), std::size_t(n));
}

// ---------------------------------------------------- late transact replies

// A server written by hand: it takes one client, reads its hello and runs
// `script` on the connection, which sends the reply (ok_reply) and what
// follows when and how the test needs it.
class hand_server {
public:
  hand_server(const pipe_name& name, std::function<void(int)> script) {
    std::error_code ec;
    path_ = local_path(name, ec);
    lfd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path_.c_str(), sizeof sa.sun_path - 1);
    ok_ = ::bind(lfd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 && ::listen(lfd_, 4) == 0;
    t_ = std::thread([this, name, script = std::move(script)] {
      int fd = ::accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      std::string hello(16 + name.name().size(), '\0');
      ::recv(fd, hello.data(), hello.size(), MSG_WAITALL);
      script(fd);
      char b;
      ::recv(fd, &b, 1, 0); // until the client leaves
      ::close(fd);
    });
  }
  ~hand_server() {
    ::shutdown(lfd_, SHUT_RDWR);
    ::close(lfd_);
    t_.join();
    ::unlink(path_.c_str());
  }
  bool ok() const { return ok_; }
  /// The server's reply: ok, message pipe, 32 MiB receive limit.
  static std::string ok_reply() { return std::string("NPIP\x01\x00\x01\x00\x00\x00\x00\x02\x00\x00\x00\x00", 16); }
  static std::string read_frame(int fd) {
    std::string h(5, '\0');
    if (::recv(fd, h.data(), 5, MSG_WAITALL) != 5) return {};
    std::uint32_t len = 0;
    for (int i = 0; i < 4; ++i) len |= static_cast<std::uint32_t>(static_cast<unsigned char>(h[1 + i])) << (8 * i);
    std::string body(len, '\0');
    if (len) ::recv(fd, body.data(), len, MSG_WAITALL);
    return body;
  }

private:
  std::string path_;
  int lfd_ = -1;
  bool ok_ = false;
  std::thread t_;
};

// Answers a transact's request with a long reply in two parts, the second
// only when told: the client's transact times out with part of the reply
// taken in.
class late_reply_server {
public:
  explicit late_reply_server(const pipe_name& name)
      : srv_(name, [this](int fd) {
          send_all(fd, hand_server::ok_reply());
          hand_server::read_frame(fd); // the first request
          std::string late = std::string(100'000, 'L');
          send_all(fd, header(static_cast<std::uint32_t>(late.size())) + late.substr(0, 1000)); // part of the reply
          go_.get_future().wait();
          send_all(fd, late.substr(1000)); // the rest, after the client gave up
          std::string req2 = hand_server::read_frame(fd);
          send_all(fd, header(static_cast<std::uint32_t>(req2.size() + 4)) + "re: " + req2);
        }) {}
  bool ok() const { return srv_.ok(); }
  void send_rest() { go_.set_value(); }

private:
  std::promise<void> go_;
  hand_server srv_; // last: its thread uses go_
};

TEST_F(Hostile, ATransactThatTimesOutMidReplyDiscardsThatReplyWhole) {
  auto name = random_pipe("late");
  late_reply_server srv(name);
  ASSERT_TRUE(srv.ok());
  auto c = connect(name, {}, 5s);
  std::error_code ec;
  c.transact(bytes("req1"), 200ms, ec);
  EXPECT_EQ(ec, errc::timed_out) << ec.message();
  srv.send_rest();
  EXPECT_EQ(c.transact(std::string_view("req2"), 10s), "re: req2") << "not the rest of the late reply";
}

TEST_F(Hostile, AnAsyncTransactThatTimesOutOrIsCancelledNeverHandsItsReplyOn) {
  auto name = random_pipe("alate");
  late_reply_server srv(name);
  ASSERT_TRUE(srv.ok());
  net::io_context ctx;
  auto work = net::make_work_guard(ctx);
  std::thread t([&] { ctx.run(); });
  async_connection c(ctx);
  {
    auto [h, f] = outcome<>();
    c.async_connect(name, client_options{}, 5s, h);
    ASSERT_FALSE(std::get<0>(f.get()));
  }
  std::string r1 = "req1", r2 = "req2";
  {
    auto [h, f] = outcome<std::vector<std::byte>>();
    c.async_transact(net::buffer(r1), 200ms, h);
    EXPECT_EQ(std::get<0>(f.get()), errc::timed_out);
  }
  srv.send_rest();
  {
    auto [h, f] = outcome<std::vector<std::byte>>();
    c.async_transact(net::buffer(r2), 10s, h);
    auto [ec, reply] = f.get();
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(text(reply), "re: req2") << "not the late reply";
  }
  c.close();
  work.reset();
  t.join();
}

// Byte read mode returns everything the pipe holds, as ReadFile does: here
// the first message came with the handshake's reply and the second is in the
// socket when the read starts. Both ends once failed this one run in a few
// hundred (Local.ByteReadModeOnMessagePipeJoinsMessages), returning "hello ".
class HandServer : public Hostile {
protected:
  // Connects to `name` in byte read mode (blocking, or async with its own
  // I/O thread), runs `connected`, then makes one read of up to 64 bytes
  // and returns what it read.
  static std::string byte_mode_read(const pipe_name& name, bool async, const std::function<void()>& connected) {
    client_options o;
    o.read_mode = read_mode::byte;
    std::byte buf[64];
    if (!async) {
      auto c = connect(name, o, 5s);
      connected();
      auto r = c.read(buf, 5s);
      return text({buf, buf + r.bytes});
    }
    net::io_context ctx;
    auto work = net::make_work_guard(ctx);
    std::thread t([&] { ctx.run(); });
    async_connection c(ctx);
    std::string got;
    auto [ch, cf] = outcome<>();
    c.async_connect(name, o, 5s, ch);
    if (auto [ec] = cf.get(); ec) {
      ADD_FAILURE() << "connect: " << ec.message();
    } else {
      connected();
      auto [h, f] = outcome<read_result>();
      c.async_read_some(net::buffer(buf), 5s, h);
      if (f.wait_for(10s) != std::future_status::ready) {
        ADD_FAILURE() << "the read was held";
      } else {
        auto [ec2, r] = f.get();
        EXPECT_FALSE(ec2) << ec2.message();
        got = text({buf, buf + r.bytes});
      }
    }
    c.close();
    work.reset();
    t.join();
    return got;
  }
};

TEST_F(HandServer, AByteModeReadReturnsAllThePipeHoldsNotOnlyWhatAnEarlierReadBrought) {
  for (bool async : {false, true}) {
    SCOPED_TRACE(async ? "async" : "blocking");
    auto name = random_pipe("join");
    std::promise<void> go, sent;
    auto go_f = go.get_future();
    hand_server srv(name, [&](int fd) {
      send_all(fd, hand_server::ok_reply() + header(6) + "hello "); // one write: reply and first message
      if (go_f.wait_for(10s) != std::future_status::ready) return;
      send_all(fd, header(5) + "world"); // in the client's socket once send() returns
      sent.set_value();
    });
    ASSERT_TRUE(srv.ok());
    EXPECT_EQ(byte_mode_read(name, async,
                             [&] {
                               go.set_value();
                               sent.get_future().wait();
                             }),
              "hello world");
  }
}

// Over max_waiting, a client that asked to wait is told at once that the
// waiting room is full: pipe_busy, not a wait that "ran out" after 10 ms.
TEST_F(Hostile, AClientOverMaxWaitingGetsPipeBusyAtOnceAndSaysWhy) {
  auto name = random_pipe("wait");
  server_options o;
  o.max_instances = 1;
  o.max_waiting = 1;
  server s(name, o);
  auto a = connect(name, {}, 5s); // takes the one instance
  auto held = s.accept(5s);
  std::string hello = raw_hello(name);
  hello[8] = static_cast<char>(0x88); // wait_ms = 5000
  hello[9] = 0x13;
  int waiter = raw_connect(s.native_path());
  ASSERT_GE(waiter, 0);
  ASSERT_TRUE(send_all(waiter, hello));
  ASSERT_TRUE(server_read_all({waiter})) << "the waiter's hello was read: it waits now";
  auto t0 = std::chrono::steady_clock::now();
  std::error_code ec;
  connect(name, {}, 5s, ec);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(ec, errc::pipe_busy) << ec.message();
  EXPECT_NE(last_error_detail().find("max_waiting"), std::string::npos) << last_error_detail();
  EXPECT_LT(took, 2s);
  ::close(waiter);
}

// ------------------------------------------------------ fair admission

// 2,000 connections that never say hello, held by one user (and reopened as
// the server lets them go), do not lock out a client of another user.
TEST_F(Hostile, SilentConnectionsOfOneUserDoNotLockOutAnother) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the attacker as another user";
  watchdog(180);
  constexpr int silent = 2000;
  auto name = random_pipe("fair");
  signal_pipe holding, stop;
  std::string path; // known before the fork: the child needs it
  {
    std::error_code ec;
    path = local_path(name, ec);
  }
  gated_child attacker([&] {
    watchdog(170); // it lives as long as the calls take (a minute under the sanitizers)
    if (!raise_fd_limit(silent + 64)) return 80;
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 81;
    std::vector<int> fds;
    for (int i = 0; i < silent; ++i) {
      int fd = raw_connect(path);
      if (fd < 0) return 82;
      fds.push_back(fd);
    }
    holding.notify();
    std::vector<pollfd> pf(fds.size());
    for (;;) {
      for (std::size_t i = 0; i < fds.size(); ++i) pf[i] = {fds[i], POLLIN, 0};
      ::poll(pf.data(), pf.size(), 20);
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (!pf[i].revents) continue;
        ::close(fds[i]); // let go (or answered): take another slot at once
        int fd = raw_connect(path);
        if (fd >= 0) fds[i] = fd;
      }
      if (stop.wait(0ms)) return 0;
    }
  });
  server_options o;
  o.access = access_policy::everyone();
  net::io_context ctx;
  auto work = net::make_work_guard(ctx);
  async_server srv(ctx, name, o);
  srv.serve([](request r) { return r.take(); });
  std::thread t([&] { ctx.run(); });
  attacker.start();
  ASSERT_TRUE(holding.wait(60s)) << "the attacker could not open its connections";

  auto calls = time_calls(latency_calls, [&](std::error_code& ec) {
    return text(call(name, bytes("legit"), 5s, ec)) == "legit";
  });
  int fds_now = open_fds();
  stop.notify();
  EXPECT_EQ(attacker.wait(), 0);
  std::printf("[ hostile ] %d silent connections of uid 65534: %d calls of uid 0, p50 %.2f ms, p99 %.2f ms, "
              "max %.2f ms; server process fds %d\n",
              silent, latency_calls, calls.p50(), calls.p99(), calls.max(), fds_now);
  EXPECT_EQ(calls.failures, 0) << calls.first_failure;
  EXPECT_LT(calls.p99(), 2000.0) << "p99 of the other user's calls";
  EXPECT_LT(fds_now, 400) << "the server held on to the silent connections";
  srv.stop(2s);
  work.reset();
  t.join();
}

} // namespace

// A peer that keeps sending empty messages behind the first one cannot hold
// a byte-mode read that reads on without waiting (either end): it returns
// what it has once it has read as much as its buffer, or the kernel is dry.
TEST_F(HandServer, EmptyMessagesWithoutEndDoNotHoldAByteModeRead) {
  for (bool async : {false, true}) {
    SCOPED_TRACE(async ? "async" : "blocking");
    auto name = random_pipe("empties");
    std::atomic<bool> stop{false};
    hand_server srv(name, [&](int fd) {
      send_all(fd, hand_server::ok_reply() + header(6) + "hello ");
      std::string empties;
      for (int i = 0; i < 4096; ++i) empties += header(0);
      while (!stop && send_all(fd, empties)) {
      }
    });
    ASSERT_TRUE(srv.ok());
    EXPECT_EQ(byte_mode_read(name, async, [] {}), "hello ");
    stop = true;
  }
}

namespace {

bool readable(int fd, std::chrono::milliseconds t) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(t.count())) == 1 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

// What a client in another event loop does once the native handle is
// readable: read with no_wait until the pipe says timed_out (or fails).
// Each read runs on its own thread, so a read that waited for the peer is
// reported instead of hanging the test. Returns the bytes, the final error.
std::pair<std::string, std::error_code> drain(connection& c) {
  std::string got;
  for (int i = 0; i < 1000; ++i) {
    auto f = std::async(std::launch::async, [&] {
      std::byte buf[64];
      std::error_code ec;
      auto r = c.read(buf, no_wait, ec);
      return std::make_pair(text({buf, buf + r.bytes}), ec);
    });
    if (f.wait_for(10s) != std::future_status::ready) {
      ADD_FAILURE() << "a read with no_wait waited for the peer";
      c.close();
      return {got, make_error_code(errc::not_connected)};
    }
    auto [bytes, ec] = f.get();
    got += bytes;
    if (ec) return {got, ec};
  }
  ADD_FAILURE() << "the reads never ran dry";
  return {got, {}};
}

} // namespace

// The native handle's contract on Linux (docs/native-handles.md): once the
// socket is readable, a read with no_wait does not block, whatever the peer
// sent: part of a frame header, part of a message, a flush alone, two
// messages in one write, its end. After a drain that ends in timed_out
// nothing is left inside npipe that the socket would not signal.
TEST_F(HandServer, AReadableNativeHandleNeverMakesANoWaitCallBlock) {
  auto name = random_pipe("native");
  std::promise<int> server_fd;
  std::promise<void> done;
  auto done_f = done.get_future();
  hand_server srv(name, [&](int fd) {
    send_all(fd, hand_server::ok_reply());
    server_fd.set_value(fd);
    done_f.wait();
  });
  ASSERT_TRUE(srv.ok());
  auto c = connect(name, {}, 5s);
  int h = c.native_handle();
  int fd = server_fd.get_future().get();
  EXPECT_FALSE(readable(h, 0ms)) << "nothing was sent after the handshake";

  // Part of a frame header, then the rest of it with part of the message.
  std::string hello = header(5) + "hello";
  ASSERT_TRUE(send_all(fd, hello.substr(0, 2)));
  ASSERT_TRUE(readable(h, 10s));
  auto [a, ec_a] = drain(c);
  EXPECT_EQ(ec_a, errc::timed_out) << ec_a.message();
  ASSERT_TRUE(send_all(fd, hello.substr(2, 6)));
  ASSERT_TRUE(readable(h, 10s));
  auto [b, ec_b] = drain(c);
  EXPECT_EQ(ec_b, errc::timed_out) << ec_b.message();
  ASSERT_TRUE(send_all(fd, hello.substr(8)));
  ASSERT_TRUE(readable(h, 10s));
  auto [rest, ec_rest] = drain(c);
  EXPECT_EQ(ec_rest, errc::timed_out) << ec_rest.message();
  EXPECT_EQ(a + b + rest, "hello");

  // A flush alone: the read answers it and returns timed_out.
  ASSERT_TRUE(send_all(fd, header(0, '\x02')));
  ASSERT_TRUE(readable(h, 10s));
  auto [none, ec_none] = drain(c);
  EXPECT_EQ(none, "");
  EXPECT_EQ(ec_none, errc::timed_out) << ec_none.message();
  ASSERT_TRUE(readable(fd, 10s)) << "no acknowledgement of the flush";
  char ack[5] = {};
  ASSERT_EQ(::recv(fd, ack, sizeof ack, MSG_DONTWAIT), 5);
  EXPECT_EQ(ack[0], '\x03');

  // Two messages in one write: one readiness, two messages; then nothing
  // hides in npipe's buffer.
  ASSERT_TRUE(send_all(fd, header(3) + "one" + header(3) + "two"));
  ASSERT_TRUE(readable(h, 10s));
  auto [both, ec_both] = drain(c);
  EXPECT_EQ(both, "onetwo");
  EXPECT_EQ(ec_both, errc::timed_out) << ec_both.message();
  EXPECT_FALSE(readable(h, 0ms));
  EXPECT_EQ(c.peek().total_available, 0u);

  // The peer's end: readable, and the read says broken_pipe at once.
  ::shutdown(fd, SHUT_WR);
  ASSERT_TRUE(readable(h, 10s));
  auto [end, ec_end] = drain(c);
  EXPECT_EQ(end, "");
  EXPECT_EQ(ec_end, errc::broken_pipe) << ec_end.message();
  c.close();
  std::error_code ec;
  c.native_handle(ec);
  EXPECT_EQ(ec, errc::not_connected);
  done.set_value();
}
