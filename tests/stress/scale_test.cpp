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

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(io_context.hpp)

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <mutex>
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


// A request: client id, sequence number, then pseudo-random bytes.
std::vector<std::byte> make_request(std::uint32_t client, std::uint32_t seq, std::size_t size, std::mt19937& rng) {
  std::vector<std::byte> v(std::max<std::size_t>(size, 8));
  std::memcpy(v.data(), &client, 4);
  std::memcpy(v.data() + 4, &seq, 4);
  for (std::size_t i = 8; i < v.size(); ++i) v[i] = static_cast<std::byte>(rng());
  return v;
}

// Connect `n` async clients to `name`, `wave` at a time (so the server's
// listen backlog never overflows for long). Adds to `conns`; returns the
// number of failed connects.
unsigned connect_in_waves(net::io_context& ctx, unsigned n, unsigned wave, const pipe_name& name,
                          const client_options& co, std::vector<std::unique_ptr<async_connection>>& conns) {
  std::atomic<unsigned> failures{0};
  for (unsigned base = 0; base < n; base += wave) {
    unsigned count = std::min(wave, n - base);
    std::vector<std::future<void>> fs;
    for (unsigned i = 0; i < count; ++i) {
      conns.push_back(std::make_unique<async_connection>(ctx));
      auto p = std::make_shared<std::promise<void>>();
      fs.push_back(p->get_future());
      conns.back()->async_connect(name, co, 60s, [p, &failures](async_error_code ec) {
        if (ec && ++failures == 1) std::fprintf(stderr, "first connect failure: %s\n", ec.message().c_str());
        p->set_value();
      });
    }
    for (auto& f : fs) f.get();
  }
  return failures.load();
}

// Every client transacts `rounds` times with random sizes up to `limit`, all
// at once; returns the seconds taken, or a negative number if they did not
// finish. `bad` counts replies that are not exactly their request.
double transact_everyone(const std::vector<std::unique_ptr<async_connection>>& conns, unsigned rounds,
                         std::size_t limit, std::atomic<unsigned>& bad) {
  struct client_state {
    async_connection* c;
    std::uint32_t id;
    std::uint32_t seq = 0;
    std::mt19937 rng;
    std::vector<std::byte> req;
  };
  // Shared with every completion handler: the last one to run may still be
  // inside `step` when this function returns, so none of it lives on our stack.
  struct run_state {
    unsigned n, rounds;
    std::size_t limit;
    std::atomic<unsigned>* bad;
    std::atomic<unsigned> finished{0};
    std::promise<void> all_done;
  };
  auto rs = std::make_shared<run_state>();
  rs->n = static_cast<unsigned>(conns.size());
  rs->rounds = rounds;
  rs->limit = limit;
  rs->bad = &bad;
  struct stepper {
    static void step(const std::shared_ptr<run_state>& rs, const std::shared_ptr<client_state>& s) {
      if (s->seq == rs->rounds) {
        if (++rs->finished == rs->n) rs->all_done.set_value();
        return;
      }
      std::size_t size = s->rng() % 8 == 0 ? rs->limit : s->rng() % (rs->limit + 1);
      s->req = make_request(s->id, s->seq, size, s->rng);
      s->c->async_transact(net::buffer(s->req), 60s, [rs, s](async_error_code ec, std::vector<std::byte> reply) {
        if (ec || reply != s->req) { if (++*rs->bad <= 3) std::fprintf(stderr, "bad reply: %s (%s)\n", ec.message().c_str(), npipe::last_error_detail().c_str()); }
        ++s->seq;
        step(rs, s);
      });
    }
  };
  auto done = rs->all_done.get_future();
  auto t0 = std::chrono::steady_clock::now();
  for (unsigned i = 0; i < rs->n; ++i)
    stepper::step(rs, std::make_shared<client_state>(client_state{conns[i].get(), i, 0, std::mt19937(i), {}}));
  if (done.wait_for(300s) != std::future_status::ready) return -1;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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
    net::io_context ctx;
    auto work = net::make_work_guard(ctx);
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

  net::io_context ctx;
  auto work = net::make_work_guard(ctx);
  std::thread t1([&] { ctx.run(); }), t2([&] { ctx.run(); });
  std::vector<std::unique_ptr<async_connection>> conns;
  conns.reserve(n);
  auto t0 = std::chrono::steady_clock::now();
  unsigned connect_failures = connect_in_waves(ctx, n, 500, name, client_options{}, conns);
  auto connect_time = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(connect_failures, 0u);
  long rss_idle = settled_rss_kib(server.pid()); // once the server's allocations for them are done
  double per_conn = static_cast<double>(rss_idle - rss_before) * 1024.0 / n;
  std::printf("[ scale ] %u connections in %.2f s; server RSS %ld -> %ld KiB: %.0f bytes per idle connection\n", n,
              std::chrono::duration<double>(connect_time).count(), rss_before, rss_idle, per_conn);
  RecordProperty("bytes_per_idle_connection", static_cast<int>(per_conn));

  // Every client transacts `rounds` times, all clients at once.
  std::atomic<unsigned> bad{0};
  double secs = transact_everyone(conns, rounds, limit, bad);
  ASSERT_GE(secs, 0) << "the transacts did not finish";
  std::printf("[ scale ] %u transacts (random sizes up to %zu bytes) in %.2f s: %.0f/s\n", n * rounds, limit, secs,
              n * rounds / secs);
  EXPECT_EQ(bad.load(), 0u) << "every reply matches its own request";

  for (auto& c : conns) c->close();
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
    net::io_context ctx;
    auto work = net::make_work_guard(ctx);
    async_server srv(ctx, name, o);
    std::atomic<std::uint64_t> served{0};
    srv.serve([&](request r) {
      ++served;
      return r.take();
    });
    auto g = loopback_gateway(gateway_certs_and_psk());
    g.exports = {name.name()};
    g.port = port;
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

  net::io_context ctx;
  auto work = net::make_work_guard(ctx);
  std::thread t1([&] { ctx.run(); }), t2([&] { ctx.run(); });
  client_options co;
  co.tls = client_psk();
  auto remote = remote_name("127.0.0.1", port, name);
  std::vector<std::unique_ptr<async_connection>> conns;
  auto t0 = std::chrono::steady_clock::now();
  unsigned connect_failures = connect_in_waves(ctx, n, 100, remote, co, conns); // short gateway backlog
  auto connect_time = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(connect_failures, 0u);
  long rss_idle = settled_rss_kib(server.pid()); // once the server's allocations for them are done
  double per_conn = static_cast<double>(rss_idle - rss_before) * 1024.0 / n;
  std::printf("[ scale ] %u remote TLS connections in %.2f s; gateway+server RSS %ld -> %ld KiB: %.0f bytes per "
              "idle remote connection\n",
              n, std::chrono::duration<double>(connect_time).count(), rss_before, rss_idle, per_conn);

  std::atomic<unsigned> bad{0};
  double secs = transact_everyone(conns, rounds, limit, bad);
  ASSERT_GE(secs, 0) << "the transacts did not finish";
  std::printf("[ scale ] %u remote transacts (random sizes up to %zu bytes) in %.2f s: %.0f/s\n", n * rounds, limit,
              secs, n * rounds / secs);
  EXPECT_EQ(bad.load(), 0u) << "every reply matches its own request";

  for (auto& c : conns) c->close();
  done.notify();
  EXPECT_EQ(server.wait(), 0) << "the server saw exactly one call per request";
  work.reset();
  ctx.stop();
  t1.join();
  t2.join();
}

// 10,000 TLS connect + call + close cycles (4 clients at a time) through a
// gateway with two I/O threads: none fails, and every session the gateway
// ends is counted under a reason (a session closed on a spurious wake-up
// used to leave the client with "closed during the TLS handshake" and the
// gateway with no count at all).
unsigned tls_cycles_wanted() {
  if (const char* e = std::getenv("NPIPE_REMOTE_STRESS_CYCLES"); e && *e) return static_cast<unsigned>(std::stoul(e));
  return 10'000;
}

TEST_F(Scale, TenThousandTlsCallCyclesThroughATwoThreadGatewayAllSucceedAndAreCounted) {
  const unsigned n = tls_cycles_wanted();
  constexpr unsigned clients = 4;
  watchdog(600);
  auto name = random_pipe("cycles");
  server_options o;
  o.accept_remote = true;
  net::io_context ctx;
  async_server srv(ctx, name, o);
  srv.serve([](request r) { return r.take(); });
  std::thread t1([&] { ctx.run(); });
  auto g = loopback_gateway(gateway_certs_and_psk());
  g.exports = {name.name()};
  g.threads = 2;
  gateway gw(g);
  client_options co;
  co.tls = client_psk();
  auto remote = remote_name("127.0.0.1", gw.port(), name);
  std::atomic<unsigned> next{0}, failures{0};
  std::mutex mu;
  std::string first_failure;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (unsigned c = 0; c < clients; ++c)
    ts.emplace_back([&] {
      for (unsigned i = next++; i < n; i = next++) {
        std::error_code ec;
        std::string req = "cycle " + std::to_string(i);
        auto reply = call(remote, bytes(req), 10s, ec, co);
        if (ec || text(reply) != req) {
          std::lock_guard lk(mu);
          if (failures++ == 0) first_failure = "cycle " + std::to_string(i) + ": " + ec.message() + " (" + last_error_detail() + ")";
        }
      }
    });
  for (auto& t : ts) t.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // The last sessions end a moment after their clients: wait for that.
  wait_until([&] { return gw.stats().active == 0 && gw.stats().closed >= gw.stats().relayed; }, 10s);
  auto st = gw.stats();
  std::printf("[ scale ] %u TLS connect+call+close cycles through a 2-thread gateway in %.2f s (%.0f/s): accepted %llu, "
              "relayed %llu, closed %llu, tls_failed %llu, refused %llu, dropped %llu\n",
              n, secs, n / secs, static_cast<unsigned long long>(st.accepted),
              static_cast<unsigned long long>(st.relayed), static_cast<unsigned long long>(st.closed),
              static_cast<unsigned long long>(st.tls_failed), static_cast<unsigned long long>(st.refused),
              static_cast<unsigned long long>(st.dropped));
  EXPECT_EQ(failures.load(), 0u) << first_failure;
  EXPECT_EQ(st.active, 0u);
  EXPECT_EQ(st.accepted, st.dropped + st.tls_failed + st.refused + st.relayed) << "every session counted once";
  EXPECT_EQ(st.closed, st.relayed);
  EXPECT_EQ(st.tls_failed, 0u);
  EXPECT_EQ(st.refused, 0u);
  EXPECT_GE(st.relayed, n);
  gw.close();
  srv.stop(2s);
  t1.join();
}

} // namespace
