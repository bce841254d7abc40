// SPDX-License-Identifier: MIT
// Soak: many connect + transact + close cycles against one server process;
// reports the server's descriptors and memory before and after, and errors.
//
//   npipe_soak [CYCLES=1000000] [CLIENT_THREADS=2]

#include "proc_stats.hpp"

#include <npipe/npipe.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using bench::count_fds;
using bench::rss_kib;

int main(int argc, char** argv) {
  const long cycles = argc > 1 ? std::atol(argv[1]) : 1'000'000;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  char tmpl[] = "/tmp/npipe-soak-XXXXXX";
  ::setenv("NPIPE_DIR", ::mkdtemp(tmpl), 1);
  npipe::pipe_name name("soak");
  int ready[2];
  if (::pipe(ready) != 0) return 1;
  pid_t server = ::fork();
  if (server == 0) {
    npipe::server s(name);
    [[maybe_unused]] auto n = ::write(ready[1], "r", 1);
    for (;;) {
      std::error_code ec;
      auto c = s.accept(ec);
      if (ec) continue;
      std::thread([c = std::move(c)]() mutable {
        std::error_code e;
        auto m = c.receive(std::chrono::seconds(10), e);
        if (!e) c.write(m, std::chrono::seconds(10), e);
      }).detach();
    }
  }
  char r;
  if (::read(ready[0], &r, 1) != 1) return 1;
  // Warm up, then take the baseline.
  for (int i = 0; i < 1000; ++i) npipe::call(name, "warm-up", std::chrono::seconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int fds0 = count_fds(server);
  long rss0 = rss_kib(server);

  std::atomic<long> next{0}, errors{0};
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> th;
  for (int t = 0; t < threads; ++t)
    th.emplace_back([&] {
      std::string req = "soak-request";
      while (next.fetch_add(1) < cycles) {
        std::error_code ec;
        auto reply = npipe::call(name, std::as_bytes(std::span(req)), std::chrono::seconds(10), ec);
        if (ec || reply.size() != req.size()) ++errors;
      }
    });
  for (auto& t : th) t.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int fds1 = count_fds(server);
  long rss1 = rss_kib(server);
  std::printf("soak: %ld connect+transact+close cycles in %.1f s (%.0f/s), %ld errors; server fds %d -> %d, "
              "RSS %ld -> %ld KiB\n",
              cycles, secs, static_cast<double>(cycles) / secs, errors.load(), fds0, fds1, rss0, rss1);
  ::kill(server, SIGKILL);
  ::waitpid(server, nullptr, 0);
  std::system(("rm -rf " + std::string(tmpl)).c_str());
  return errors == 0 && fds1 <= fds0 ? 0 : 1;
}
