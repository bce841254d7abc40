// SPDX-License-Identifier: MIT
// Scale: one async server holding 10,000 concurrent client connections
// (NPIPE_STRESS_CLIENTS overrides; the sanitizer presets use fewer), every
// client doing transacts with random sizes up to the server's limit. Each
// reply is checked byte for byte against its request, which carries the
// client's id and the request's sequence number: nothing lost, nothing
// duplicated, nothing crossed between clients. The server runs in its own
// process so its memory per idle connection can be read off /proc.

#include "remote_support.hpp"
#include "test_support.hpp"

#include <npipe/async.hpp>
#include <npipe/npipe.hpp>
#include <npipe/remote.hpp>

#include <asio/io_context.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <random>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace std::chrono_literals;
using namespace npipe;
using namespace npipe::test;

namespace {

using Scale = local_test;

unsigned clients_wanted() {
  if (const char* e = std::getenv("NPIPE_STRESS_CLIENTS"); e && *e) return static_cast<unsigned>(std::stoul(e));
  return 10'000;
}

bool raise_fd_limit(rlim_t want) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return false;
  if (r.rlim_cur >= want) return true;
  r.rlim_cur = std::min(want, r.rlim_max);
  return ::setrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur >= want;
}


// A request: client id, sequence number, then pseudo-random bytes.
std::vector<std::byte> make_request(std::uint32_t client, std::uint32_t seq, std::size_t size, std::mt19937& rng) {
  std::vector<std::byte> v(std::max<std::size_t>(size, 8));
  std::memcpy(v.data(), &client, 4);
  std::memcpy(v.data() + 4, &seq, 4);
  for (std::size_t i = 8; i < v.size(); ++i) v[i] = static_cast<std::byte>(rng());
  return v;
}

TEST_F(Scale, TenThousandConcurrentClientsTransactWithNothingLostOrCrossed) {
  const unsigned n = clients_wanted();
  constexpr unsigned rounds = 3;
  constexpr std::size_t limit = 16 << 10;
  watchdog(600);
  const rlim_t fds_needed = n + 200;
  if (!raise_fd_limit(fds_needed))
    GTEST_SKIP() << "RLIMIT_NOFILE cannot reach " << fds_needed << " here (hard limit too low)";
  auto name = random_pipe("scale");
  signal_pipe ready, done;
  // The server process: forked before this process starts any thread.
  gated_child server([&] {
    server_options o;
    o.max_connections = n + 16;
    o.max_message_size = limit;
    o.max_pending = 256;
    asio::io_context ctx;
    auto work = asio::make_work_guard(ctx);
    async_server srv(ctx, name, o);
    std::atomic<std::uint64_t> served{0};
    srv.serve([&](request r) {
      ++served;
      return r.take();
    });
    std::thread t1([&] { ctx.run(); }), t2([&] { ctx.run(); });
    ready.notify();
    bool ok = done.wait(std::chrono::seconds(900));
    srv.stop(5s);
    work.reset();
    ctx.stop();
    t1.join();
    t2.join();
    // Exactly one handler call per request sent: nothing lost or duplicated.
    if (!ok || served.load() != std::uint64_t(n) * rounds) {
      std::fprintf(stderr, "server handled %llu requests, expected %llu\n",
                   static_cast<unsigned long long>(served.load()), static_cast<unsigned long long>(n) * rounds);
      return 1;
    }
    return 0;
  });
  server.start();
  ASSERT_TRUE(ready.wait(30s));
  long rss_before = rss_kib(server.pid());

  asio::io_context ctx;
  auto work = asio::make_work_guard(ctx);
  std::thread t1([&] { ctx.run(); }), t2([&] { ctx.run(); });
  std::vector<std::unique_ptr<async_connection>> conns;
  conns.reserve(n);
  std::atomic<unsigned> connect_failures{0};
  // Connect in waves so the server's listen backlog never overflows for long.
  auto t0 = std::chrono::steady_clock::now();
  for (unsigned base = 0; base < n; base += 500) {
    unsigned wave = std::min(500u, n - base);
    std::vector<std::future<void>> fs;
    for (unsigned i = 0; i < wave; ++i) {
      conns.push_back(std::make_unique<async_connection>(ctx));
      auto p = std::make_shared<std::promise<void>>();
      fs.push_back(p->get_future());
      conns.back()->async_connect(name, client_options{}, 30s, [p, &connect_failures](std::error_code ec) {
        if (ec) ++connect_failures;
        p->set_value();
      });
    }
    for (auto& f : fs) f.get();
  }
  auto connect_time = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(connect_failures.load(), 0u);
  std::this_thread::sleep_for(500ms); // let the server settle
  long rss_idle = rss_kib(server.pid());
  double per_conn = static_cast<double>(rss_idle - rss_before) * 1024.0 / n;
  std::printf("[ scale ] %u connections in %.2f s; server RSS %ld -> %ld KiB: %.0f bytes per idle connection\n", n,
              std::chrono::duration<double>(connect_time).count(), rss_before, rss_idle, per_conn);
  RecordProperty("bytes_per_idle_connection", static_cast<int>(per_conn));

  // Every client transacts `rounds` times, all clients at once.
  std::atomic<unsigned> bad{0}, finished{0};
  std::promise<void> all_done;
  auto t1s = std::chrono::steady_clock::now();
  struct client_state {
    async_connection* c;
    std::uint32_t id;
    std::uint32_t seq = 0;
    std::mt19937 rng;
    std::vector<std::byte> req;
  };
  std::vector<std::shared_ptr<client_state>> states;
  std::function<void(std::shared_ptr<client_state>)> step = [&](std::shared_ptr<client_state> s) {
    if (s->seq == rounds) {
      if (++finished == n) all_done.set_value();
      return;
    }
    std::size_t size = s->rng() % 8 == 0 ? limit : s->rng() % (limit + 1);
    s->req = make_request(s->id, s->seq, size, s->rng);
    s->c->async_transact(asio::buffer(s->req), 60s, [&, s](std::error_code ec, std::vector<std::byte> reply) {
      if (ec || reply != s->req) ++bad;
      ++s->seq;
      step(s);
    });
  };
  for (unsigned i = 0; i < n; ++i) {
    auto s = std::make_shared<client_state>(client_state{conns[i].get(), i, 0, std::mt19937(i), {}});
    states.push_back(s);
    step(s);
  }
  ASSERT_EQ(all_done.get_future().wait_for(300s), std::future_status::ready);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1s).count();
  std::printf("[ scale ] %u transacts (random sizes up to %zu bytes) in %.2f s: %.0f/s\n", n * rounds, limit, secs,
              n * rounds / secs);
  EXPECT_EQ(bad.load(), 0u) << "every reply matches its own request";

  for (auto& c : conns) c->close();
  states.clear();
  done.notify();
  EXPECT_EQ(server.wait(), 0) << "the server saw exactly one call per request";
  work.reset();
  ctx.stop();
  t1.join();
  t2.join();
}

// Remote: many TLS clients through one gateway to one async server, with
// the same checks. The async clients each relay a socket pair to their TLS
// link, so this also loads the client side's relays.
unsigned remote_clients_wanted() {
  if (const char* e = std::getenv("NPIPE_REMOTE_STRESS_CLIENTS"); e && *e) return static_cast<unsigned>(std::stoul(e));
  return 1000;
}

std::uint16_t free_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

TEST_F(Scale, ThousandRemoteTlsClientsThroughOneGatewayWithNothingLostOrCrossed) {
  const unsigned n = remote_clients_wanted();
  constexpr unsigned rounds = 3;
  constexpr std::size_t limit = 16 << 10;
  watchdog(600);
  if (!raise_fd_limit(3 * n + 200)) GTEST_SKIP() << "RLIMIT_NOFILE cannot reach " << 3 * n + 200 << " here";
  cert_dir(); // made before forking
  auto name = random_pipe("rscale");
  const std::uint16_t port = free_tcp_port();
  signal_pipe ready, done;
  gated_child server([&] {
    server_options o;
    o.max_connections = n + 16;
    o.max_message_size = limit;
    o.max_pending = 256;
    o.accept_remote = true;
    asio::io_context ctx;
    auto work = asio::make_work_guard(ctx);
    async_server srv(ctx, name, o);
    std::atomic<std::uint64_t> served{0};
    srv.serve([&](request r) {
      ++served;
      return r.take();
    });
    gateway_options g;
    g.exports = {name.name()};
    g.listen = {"127.0.0.1"};
    g.port = port;
    g.tls = gateway_certs_and_psk();
    g.max_connections = n + 16;
    gateway gw(g);
    std::thread t1([&] { ctx.run(); }), t2([&] { ctx.run(); });
    ready.notify();
    bool ok = done.wait(std::chrono::seconds(900));
    gw.close();
    srv.stop(5s);
    work.reset();
    ctx.stop();
    t1.join();
    t2.join();
    if (!ok || served.load() != std::uint64_t(n) * rounds) {
      std::fprintf(stderr, "server handled %llu requests, expected %llu\n",
                   static_cast<unsigned long long>(served.load()), static_cast<unsigned long long>(n) * rounds);
      return 1;
    }
    return 0;
  });
  server.start();
  ASSERT_TRUE(ready.wait(30s));
  long rss_before = rss_kib(server.pid());

  asio::io_context ctx;
  auto work = asio::make_work_guard(ctx);
  std::thread t1([&] { ctx.run(); }), t2([&] { ctx.run(); });
  client_options co;
  co.tls = client_psk();
  auto remote = remote_name("127.0.0.1", port, name);
  std::vector<std::unique_ptr<async_connection>> conns;
  std::atomic<unsigned> connect_failures{0};
  auto t0 = std::chrono::steady_clock::now();
  for (unsigned base = 0; base < n; base += 100) { // waves: the gateway's listen backlog stays short
    unsigned wave = std::min(100u, n - base);
    std::vector<std::future<void>> fs;
    for (unsigned i = 0; i < wave; ++i) {
      conns.push_back(std::make_unique<async_connection>(ctx));
      auto p = std::make_shared<std::promise<void>>();
      fs.push_back(p->get_future());
      conns.back()->async_connect(remote, co, 60s, [p, &connect_failures](std::error_code ec) {
        if (ec) {
          if (++connect_failures == 1) std::fprintf(stderr, "first connect failure: %s\n", ec.message().c_str());
        }
        p->set_value();
      });
    }
    for (auto& f : fs) f.get();
  }
  auto connect_time = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(connect_failures.load(), 0u);
  std::this_thread::sleep_for(500ms);
  long rss_idle = rss_kib(server.pid());
  double per_conn = static_cast<double>(rss_idle - rss_before) * 1024.0 / n;
  std::printf("[ scale ] %u remote TLS connections in %.2f s; gateway+server RSS %ld -> %ld KiB: %.0f bytes per "
              "idle remote connection\n",
              n, std::chrono::duration<double>(connect_time).count(), rss_before, rss_idle, per_conn);

  std::atomic<unsigned> bad{0}, finished{0};
  std::promise<void> all_done;
  auto t1s = std::chrono::steady_clock::now();
  struct client_state {
    async_connection* c;
    std::uint32_t id;
    std::uint32_t seq = 0;
    std::mt19937 rng;
    std::vector<std::byte> req;
  };
  std::vector<std::shared_ptr<client_state>> states;
  std::function<void(std::shared_ptr<client_state>)> step = [&](std::shared_ptr<client_state> s) {
    if (s->seq == rounds) {
      if (++finished == n) all_done.set_value();
      return;
    }
    std::size_t size = s->rng() % 8 == 0 ? limit : s->rng() % (limit + 1);
    s->req = make_request(s->id, s->seq, size, s->rng);
    s->c->async_transact(asio::buffer(s->req), 60s, [&, s](std::error_code ec, std::vector<std::byte> reply) {
      if (ec || reply != s->req) ++bad;
      ++s->seq;
      step(s);
    });
  };
  for (unsigned i = 0; i < n; ++i) {
    auto st = std::make_shared<client_state>(client_state{conns[i].get(), i, 0, std::mt19937(i), {}});
    states.push_back(st);
    step(st);
  }
  ASSERT_EQ(all_done.get_future().wait_for(300s), std::future_status::ready);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1s).count();
  std::printf("[ scale ] %u remote transacts (random sizes up to %zu bytes) in %.2f s: %.0f/s\n", n * rounds, limit,
              secs, n * rounds / secs);
  EXPECT_EQ(bad.load(), 0u) << "every reply matches its own request";

  for (auto& c : conns) c->close();
  states.clear();
  done.notify();
  EXPECT_EQ(server.wait(), 0) << "the server saw exactly one call per request";
  work.reset();
  ctx.stop();
  t1.join();
  t2.join();
}

} // namespace
