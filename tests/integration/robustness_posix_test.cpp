// SPDX-License-Identifier: MIT
// Hostile and broken peers against a local server: split and coalesced
// frames, truncated messages, wrong versions, racing reclaimers, clients
// killed mid-request, and a server out of file descriptors.

#include "raw_peer.hpp"
#include "test_support.hpp"

#include <npipe/npipe.hpp>

#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <algorithm>
#include <cerrno>
#include <atomic>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

using namespace std::chrono_literals;
using namespace npipe;
using namespace npipe::test;

namespace {

using Robust = local_test;

TEST_F(Robust, OneByteWritesAndManyFramesPerWriteKeepBoundaries) {
  auto name = random_pipe();
  server s(name);
  int fd = raw_session(s);
  ASSERT_GE(fd, 0);
  auto c = s.accept(5s);
  std::string dribble = raw_frame("split into single bytes");
  // The server reads while the bytes come, each one on its own: the next is
  // sent once the server has taken the last off the socket.
  auto first = std::async(std::launch::async, [&] { return c.receive_string(5s); });
  auto unread = [fd] {
    int n = -1;
    return ::ioctl(fd, SIOCOUTQ, &n) == 0 ? n : -1;
  };
  for (char ch : dribble) {
    ASSERT_EQ(::send(fd, &ch, 1, MSG_NOSIGNAL), 1);
    ASSERT_TRUE(wait_until([&] { return unread() == 0; }, 5s)) << "the server stopped reading";
  }
  EXPECT_EQ(first.get(), "split into single bytes");
  std::string burst = raw_frame("one") + raw_frame("") + raw_frame("three") + raw_frame(std::string(70'000, 'x'));
  ASSERT_EQ(::send(fd, burst.data(), burst.size(), MSG_NOSIGNAL), static_cast<ssize_t>(burst.size()));
  EXPECT_EQ(c.receive_string(5s), "one");
  EXPECT_EQ(c.receive_string(5s), "");
  EXPECT_EQ(c.receive_string(5s), "three");
  EXPECT_EQ(c.receive_string(5s), std::string(70'000, 'x'));
  ::close(fd);
}

TEST_F(Robust, TruncatedMessageIsAnErrorNeverAWholeMessage) {
  auto name = random_pipe();
  server s(name);
  int fd = raw_session(s);
  ASSERT_GE(fd, 0);
  auto c = s.accept(5s);
  std::string f = raw_frame(std::string(100, 'y'));
  f.pop_back(); // N-1 bytes, then the peer goes away
  ::send(fd, f.data(), f.size(), MSG_NOSIGNAL);
  ::close(fd);
  std::error_code ec;
  auto m = c.receive(5s, ec);
  EXPECT_EQ(ec, errc::broken_pipe) << ec.message();
  EXPECT_TRUE(m.empty());

  // The partial-read form hands out what came, says more_data, then fails.
  int fd2 = raw_session(s);
  ASSERT_GE(fd2, 0);
  auto c2 = s.accept(5s);
  ::send(fd2, f.data(), f.size(), MSG_NOSIGNAL);
  ::close(fd2);
  std::byte buf[200];
  std::size_t got = 0;
  for (;;) {
    auto r = c2.read(buf, 5s, ec);
    got += r.bytes;
    if (ec || !r.more_data) break;
  }
  EXPECT_EQ(ec, errc::broken_pipe);
  EXPECT_EQ(got, 99u);
}

TEST_F(Robust, WrongVersionAndWrongNameAreRefused) {
  auto name = random_pipe();
  server s(name);
  int fd = raw_connect(s.native_path());
  auto h = raw_hello(name, 2);
  ::send(fd, h.data(), h.size(), MSG_NOSIGNAL);
  char reply[16];
  ASSERT_EQ(::recv(fd, reply, 16, MSG_WAITALL), 16);
  EXPECT_EQ(reply[5], 4) << "bad_version";
  ::close(fd);
  fd = raw_connect(s.native_path());
  h = raw_hello(pipe_name("someone-else"));
  ::send(fd, h.data(), h.size(), MSG_NOSIGNAL);
  ASSERT_EQ(::recv(fd, reply, 16, MSG_WAITALL), 16);
  EXPECT_EQ(reply[5], 2) << "not_found: the hello names another pipe";
  ::close(fd);
  std::error_code ec;
  s.accept(100ms, ec);
  EXPECT_EQ(ec, errc::timed_out) << "neither reached accept()";
}

TEST_F(Robust, TwoServersRacingToReclaimAStaleSocketExactlyOneWins) {
  for (int round = 0; round < 5; ++round) {
    auto name = random_pipe();
    std::error_code ec;
    auto path = local_path(name, ec);
    {
      int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::strcpy(sa.sun_path, path.c_str());
      ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
      ::close(fd); // stale
    }
    signal_pipe go, done1, done2, looked;
    auto contender = [&](signal_pipe& done) {
      return [&, name] {
        go.wait();
        server s;
        std::error_code e;
        s.open(name, {}, e);
        done.notify();
        if (e) return e == errc::name_in_use ? 10 : 1;
        looked.wait(); // stay alive while the test looks
        return 0;
      };
    };
    child a(contender(done1)), b(contender(done2));
    go.notify();
    go.notify();
    ASSERT_TRUE(done1.wait());
    ASSERT_TRUE(done2.wait());
    auto c = connect(name, {}, 2s, ec);
    EXPECT_FALSE(ec) << "the winner's socket is live: " << ec.message();
    looked.notify();
    int ra = a.wait(), rb = b.wait();
    EXPECT_TRUE((ra == 0 && rb == 10) || (ra == 10 && rb == 0)) << ra << " " << rb;
  }
}

TEST_F(Robust, ClientsKilledMidRequestLeaveNoDescriptorsBehind) {
  auto name = random_pipe();
  server s(name);
  std::atomic<int> served{0};
  std::atomic<std::int64_t> acceptor{0};
  std::thread loop([&] {
    acceptor = this_thread_id();
    for (;;) {
      std::error_code ec;
      auto c = s.accept(ec);
      if (ec) return;
      c.receive(10s, ec); // the client dies mid-message: broken_pipe
      ++served;
    }
  });
  ASSERT_TRUE(wait_until_waiting(acceptor)) << "the accept loop never waited";
  int baseline = open_fds();
  long rss_before = rss_kib();
  constexpr int kills = 1000;
  const std::string half = raw_frame(std::string(1000, 'z')).substr(0, 500);
  // Built up front: the children are forked while the accept loop runs, so
  // they must not allocate (an allocator lock held at fork would hang them).
  const std::string path = s.native_path(), hello = raw_hello(name);
  for (int i = 0; i < kills; ++i) {
    signal_pipe sent;
    child k([&] {
      int fd = raw_session(path, hello);
      if (fd < 0) return 1;
      ::send(fd, half.data(), half.size(), MSG_NOSIGNAL); // half a request, then death
      sent.notify();
      for (;;) ::pause(); // until killed
      return 0;
    });
    ASSERT_TRUE(sent.wait());
    k.kill(SIGKILL);
    k.wait();
  }
  wait_until([&] { return served == kills; });
  EXPECT_EQ(served.load(), kills);
  // The loop closes each connection just after counting it.
  wait_until([&] { return open_fds() <= baseline + 1 && s.active_instances() == 0; }, 5s);
  EXPECT_LE(open_fds(), baseline + 1) << "every dead client's descriptor was closed";
  EXPECT_EQ(s.active_instances(), 0u) << "and every instance freed";
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) // their allocators keep freed memory
  // A leak of even 2 KiB per dead client would show as 2 MiB here.
  EXPECT_LT(rss_kib() - rss_before, 2048) << "memory returns to baseline (KiB before: " << rss_before << ")";
#endif
  s.close();
  loop.join();
}

TEST_F(Robust, PerUserCapRefusesTheExtraConnectionOnly) {
  auto name = random_pipe();
  server_options o;
  o.max_per_user = 2;
  server s(name, o);
  auto a = connect(name), b = connect(name);
  std::error_code ec;
  auto t0 = std::chrono::steady_clock::now();
  connect(name, {}, 5s, ec);
  EXPECT_EQ(ec, errc::pipe_busy) << ec.message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s) << "refused at once, not parked";
  EXPECT_NE(last_error_detail().find("this user"), std::string::npos) << last_error_detail();
  auto sa = s.accept(5s);
  a.write("still served");
  EXPECT_EQ(sa.receive_string(5s), "still served") << "existing sessions continue";
  a.close();
  sa.close(); // frees one of the user's two slots
  EXPECT_TRUE(connect(name, {}, 5s).is_open());
}

TEST_F(Robust, SlowlorisIsDroppedAtTheHandshakeTimeoutWithoutDelayingOthers) {
  auto name = random_pipe();
  server_options o;
  o.handshake_timeout = 500ms;
  server s(name, o);
  std::thread echo([&] {
    for (int i = 0; i < 5; ++i) {
      std::error_code ec;
      auto c = s.accept(10s, ec);
      if (ec) return;
      c.write(c.receive(5s));
    }
  });
  int slow = raw_connect(s.native_path());
  ASSERT_GE(slow, 0);
  auto hello = raw_hello(name);
  std::atomic<bool> dropped{false};
  std::thread dribble([&] {
    for (char ch : hello) { // one byte every 100 ms: the hello would take seconds
      if (::send(slow, &ch, 1, MSG_NOSIGNAL) != 1) break;
      std::this_thread::sleep_for(100ms); // kept: the slow sender is the scenario
    }
    dropped = closed_by_server(slow);
  });
  for (int i = 0; i < 5; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(call(name, "quick", 5s), "quick");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << "the slow client does not slow the others";
  }
  dribble.join();
  EXPECT_TRUE(dropped) << "closed at the handshake timeout";
  ::close(slow);
  echo.join();
}

TEST_F(Robust, SilentClientsFillOnlyThePendingCapAndTimeOut) {
  auto name = random_pipe();
  server_options o;
  o.max_pending = 2;
  o.handshake_timeout = 300ms;
  server s(name, o);
  std::vector<int> silent;
  for (int i = 0; i < 4; ++i) silent.push_back(raw_connect(s.native_path()));
  // Two hold the handshake slots; the two before them were let go (told so)
  // as the later ones came; the last two are dropped by the handshake timeout.
  auto t0 = std::chrono::steady_clock::now();
  auto c = connect(name, {}, 10s);
  EXPECT_TRUE(c.is_open());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  for (int fd : silent) {
    EXPECT_TRUE(closed_by_server(fd)) << "every silent client is closed";
    ::close(fd);
  }
}

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

TEST_F(Robust, ClientThatNeverReadsGetsBackpressureNotUnboundedMemory) {
  auto name = random_pipe();
  server s(name);
  auto lazy = connect(name); // never reads
  auto good = connect(name);
  auto to_lazy = s.accept(5s), to_good = s.accept(5s);
  auto chunk = pattern(64 << 10, 9);
  long before = rss_kib();
  std::error_code ec;
  std::size_t sent = 0;
  for (int i = 0; i < 1000 && !ec; ++i) {
    to_lazy.write(chunk, 500ms, ec);
    if (!ec) sent += chunk.size();
  }
  EXPECT_EQ(ec, errc::timed_out) << "the kernel buffer filled and the write waited out its deadline";
  EXPECT_LT(sent, 16u << 20) << "nothing queues beyond the socket buffer";
  EXPECT_LT(rss_kib() - before, 8 * 1024) << "server memory stays bounded (KiB)";
  good.write("still served");
  EXPECT_EQ(to_good.receive_string(5s), "still served");
  to_good.write("reply");
  EXPECT_EQ(good.receive_string(5s), "reply") << "a lazy client never hurts another";
  // What was delivered whole is intact when the lazy client finally reads.
  EXPECT_EQ(lazy.receive(5s), chunk);
}

long cpu_ticks(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), {});
  auto p = s.rfind(')');
  std::istringstream rest(s.substr(p + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

TEST_F(Robust, OutOfDescriptorsTheServerBacksOffAndRecovers) {
#ifdef NPIPE_TEST_UBSAN
  // UBSan's vptr check probes memory through a pipe(); in a process that is out
  // of descriptors that fails and it reports a valid object as "invalid vptr".
  // The default and TSan runs cover this test.
  GTEST_SKIP() << "UBSan cannot check vptrs in a process without free descriptors";
#endif
  auto name = random_pipe();
  signal_pipe ready;
  child srv([&] {
    rlimit lim{24, 24};
    ::setrlimit(RLIMIT_NOFILE, &lim);
    server s(name);
    ready.notify();
    for (;;) {
      std::error_code ec;
      auto c = s.accept(30s, ec);
      if (ec) return 0;
      std::thread([c = std::move(c)]() mutable {
        std::error_code e;
        while (!e) c.receive(e); // until the client goes; then the descriptor is freed
      }).detach();
    }
  });
  ASSERT_TRUE(ready.wait());
  std::vector<connection> clients(40);
  {
    std::vector<std::thread> th;
    for (std::size_t i = 0; i < clients.size(); ++i)
      th.emplace_back([&clients, &name, i] {
        std::error_code ec;
        clients[i] = connect(name, {}, 300ms, ec);
      });
    for (auto& t : th) t.join();
  }
  auto open = std::count_if(clients.begin(), clients.end(), [](auto& c) { return c.is_open(); });
  EXPECT_LT(open, 40) << "the server ran out of descriptors";
  EXPECT_GT(open, 0);
  long t0 = cpu_ticks(srv.pid());
  std::this_thread::sleep_for(1s); // kept: a negative check, no busy loop over this second
  long used = cpu_ticks(srv.pid()) - t0;
  EXPECT_LT(used, 30) << "no busy accept loop while out of descriptors (ticks of 10 ms in 1 s)";
  clients.clear(); // free the server's descriptors
  std::error_code ec;
  connection again;
  for (int i = 0; i < 50 && !again; ++i) again = connect(name, {}, 500ms, ec);
  EXPECT_TRUE(again.is_open()) << "recovered once descriptors were free: " << ec.message();
  srv.kill(SIGKILL);
}

} // namespace
