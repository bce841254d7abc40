// SPDX-License-Identifier: MIT
// npipe's benchmark: the same work over npipe, raw Unix sockets, NNG and
// ZeroMQ in one run, server and client in separate processes, pinned to the
// same core and to different cores, each cell repeated. Writes a markdown
// report (absolute values and ratios against raw UDS stream) and a data file
// for the chart.
//
//   npipe_bench [--quick] [--only T1,T2] [--out docs/benchmarks.md] [--data bench.dat]
//   npipe_bench --serve TRANSPORT ADDR      (internal: the server process)

#include "proc_stats.hpp"
#include "transports.hpp"

#include <npipe/version.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sched.h>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace std::chrono;
using clk = steady_clock;

namespace {

struct options {
  bool quick = false;
  std::string out = "docs/benchmarks.md";
  std::string data = "build/bench/bench.dat";
  std::string only; // comma-separated transports (plus the raw baselines)
  std::string syscalls; // a table bench/syscalls.sh wrote, included in the report
};

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % std::max(1u, std::thread::hardware_concurrency()), &set);
  sched_setaffinity(0, sizeof set, &set);
}

struct server_proc {
  pid_t pid = -1;
  server_proc(const std::string& self, const std::string& transport, const std::string& addr, int cpu) {
    pid = ::fork();
    if (pid == 0) {
      pin(cpu);
      ::execl(self.c_str(), self.c_str(), "--serve", transport.c_str(), addr.c_str(), nullptr);
      ::_exit(127);
    }
  }
  ~server_proc() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
};

// Connect, retrying while the server starts.
std::unique_ptr<bench::client> connect_retry(const bench::transport& t, const std::string& addr) {
  for (int i = 0;; ++i) {
    try {
      auto c = t.connect(addr);
      std::vector<std::byte> reply;
      c->request(std::vector<std::byte>(8, std::byte{'x'}), reply);
      return c;
    } catch (const std::exception&) {
      if (i > 500) throw;
      std::this_thread::sleep_for(10ms);
    }
  }
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

using results = std::map<std::string, double>; // metric -> value

void measure(const bench::transport& t, const std::string& addr, pid_t server, bool memory, const options& o,
             results& r) {
  auto c = connect_retry(t, addr);
  std::vector<std::byte> reply;
  const int iters = o.quick ? 2000 : 10000;
  for (std::size_t size : {64u, 4096u}) {
    std::vector<std::byte> req(size, std::byte{'x'});
    for (int i = 0; i < 500; ++i) c->request(req, reply);
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(iters));
    for (int i = 0; i < iters; ++i) {
      auto t0 = clk::now();
      c->request(req, reply);
      us.push_back(duration<double, std::micro>(clk::now() - t0).count());
    }
    if (reply.size() != size) throw std::runtime_error(t.name + ": echo has the wrong size");
    std::string tag = size == 64 ? "64B" : "4KiB";
    r["rtt_p50_" + tag] = percentile(us, 0.5);
    r["rtt_p99_" + tag] = percentile(us, 0.99);
  }
  auto window = o.quick ? 200ms : 500ms;
  for (std::size_t size : {64u << 10, 1u << 20}) {
    if (t.max_message && size > t.max_message) continue;
    std::vector<std::byte> req(size, std::byte{'A'});
    c->request(req, reply);
    std::size_t bytes = 0;
    auto t0 = clk::now();
    while (clk::now() - t0 < window) {
      c->request(req, reply);
      bytes += size;
    }
    double secs = duration<double>(clk::now() - t0).count();
    r[size == (64u << 10) ? "thr_MiBps_64KiB" : "thr_MiBps_1MiB"] = static_cast<double>(bytes) / secs / (1 << 20);
  }
  {
    std::vector<std::byte> req(64, std::byte{'x'});
    int n = 0;
    auto t0 = clk::now();
    while (clk::now() - t0 < window) {
      if (t.one_shot) {
        t.one_shot(addr, req, reply);
      } else {
        auto k = t.connect(addr);
        k->request(req, reply);
      }
      ++n;
    }
    r["connect_req_close_per_s"] = n / duration<double>(clk::now() - t0).count();
  }
  {
    constexpr int clients = 64;
    std::vector<std::unique_ptr<bench::client>> cs;
    for (int i = 0; i < clients; ++i) cs.push_back(connect_retry(t, addr));
    std::atomic<bool> go{false}, stop{false};
    std::atomic<long> total{0};
    std::vector<std::thread> th;
    for (auto& k : cs)
      th.emplace_back([&, k = k.get()] {
        std::vector<std::byte> req(64, std::byte{'x'}), rep;
        while (!go) std::this_thread::yield();
        long n = 0;
        while (!stop) {
          k->request(req, rep);
          ++n;
        }
        total += n;
      });
    auto t0 = clk::now();
    go = true;
    std::this_thread::sleep_for(o.quick ? 300ms : 1s);
    stop = true;
    for (auto& x : th) x.join();
    r["clients64_req_per_s"] = static_cast<double>(total) / duration<double>(clk::now() - t0).count();
  }
  if (memory) {
    constexpr int idle = 200;
    std::this_thread::sleep_for(100ms);
    long before = bench::rss_kib(server);
    std::vector<std::unique_ptr<bench::client>> cs;
    for (int i = 0; i < idle; ++i) cs.push_back(connect_retry(t, addr));
    std::this_thread::sleep_for(200ms);
    long after = bench::rss_kib(server);
    r["idle_conn_KiB"] = static_cast<double>(after - before) / idle;
  }
}

const std::vector<std::pair<std::string, std::string>> metrics = {
    {"rtt_p50_64B", "round trip 64 B, p50 (µs)"},      {"rtt_p99_64B", "round trip 64 B, p99 (µs)"},
    {"rtt_p50_4KiB", "round trip 4 KiB, p50 (µs)"},    {"rtt_p99_4KiB", "round trip 4 KiB, p99 (µs)"},
    {"thr_MiBps_64KiB", "throughput 64 KiB msgs (MiB/s)"}, {"thr_MiBps_1MiB", "throughput 1 MiB msgs (MiB/s)"},
    {"connect_req_close_per_s", "connect+request+close (/s)"}, {"clients64_req_per_s", "64 clients (req/s)"},
    {"idle_conn_KiB", "server memory per idle connection (KiB)"},
};
bool lower_is_better(const std::string& m) { return m.rfind("rtt", 0) == 0 || m == "idle_conn_KiB"; }

std::string fmt(double v) {
  char b[32];
  if (v >= 1000) std::snprintf(b, sizeof b, "%.0f", v);
  else if (v >= 10) std::snprintf(b, sizeof b, "%.1f", v);
  else std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

} // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--serve") {
    for (auto& t : bench::all_transports())
      if (t.name == argv[2]) t.serve(argv[3]);
    return 1;
  }
  // N connect+request+close cycles of 64 B, as the connection-rate row
  // makes them (bench/syscalls.sh counts their system calls).
  if (argc == 5 && std::string(argv[1]) == "--calls") {
    for (auto& t : bench::all_transports()) {
      if (t.name != argv[2]) continue;
      std::vector<std::byte> req(64, std::byte{'x'}), reply;
      for (long i = 0, n = std::atol(argv[4]); i < n; ++i) {
        if (t.one_shot) t.one_shot(argv[3], req, reply);
        else t.connect(argv[3])->request(req, reply);
        if (reply.size() != req.size()) return 1;
      }
      return 0;
    }
    return 1;
  }
  // N round trips of 64 B on one connection, as the round-trip row makes
  // them (bench/syscalls.sh counts their system calls).
  if (argc == 5 && std::string(argv[1]) == "--requests") {
    for (auto& t : bench::all_transports()) {
      if (t.name != argv[2]) continue;
      std::vector<std::byte> req(64, std::byte{'x'}), reply;
      auto c = t.connect(argv[3]);
      for (long i = 0, n = std::atol(argv[4]); i < n; ++i) {
        c->request(req, reply);
        if (reply.size() != req.size()) return 1;
      }
      return 0;
    }
    return 1;
  }
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") o.quick = true;
    else if (a == "--out" && i + 1 < argc) o.out = argv[++i];
    else if (a == "--data" && i + 1 < argc) o.data = argv[++i];
    else if (a == "--only" && i + 1 < argc) o.only = argv[++i];
    else if (a == "--syscalls" && i + 1 < argc) o.syscalls = argv[++i];
    else {
      std::cerr << "usage: npipe_bench [--quick] [--only T1,T2] [--out FILE.md] [--data FILE.dat] [--syscalls FILE.md]\n"
                   "       npipe_bench --serve TRANSPORT ADDR | --calls TRANSPORT ADDR N | --requests TRANSPORT ADDR N\n";
      return 2;
    }
  }
  std::signal(SIGPIPE, SIG_IGN);
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = 0;
  char tmpl[] = "/tmp/npipe-bench-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);

  const int reps = o.quick ? 1 : 3;
  auto transports = bench::all_transports();
  if (!o.only.empty()) { // the raw baselines always run: every figure is a ratio to them
    std::string keep = "," + o.only + ",";
    std::erase_if(transports,
                  [&](const auto& t) { return !t.raw && keep.find("," + t.name + ",") == std::string::npos; });
  }
  // placement -> transport -> metric -> samples
  std::map<std::string, std::map<std::string, std::map<std::string, std::vector<double>>>> all;
  for (std::string placement : {"same core", "different cores"}) {
    int client_cpu = placement == "same core" ? 0 : 1;
    for (int rep = 0; rep < reps; ++rep) {
      for (auto& t : transports) {
        std::string addr = dir + "/" + t.name + "-" + std::to_string(rep) + (placement == "same core" ? "s" : "d");
        server_proc srv(self, t.name, addr, 0);
        pin(client_cpu);
        results r;
        try {
          measure(t, addr, srv.pid, rep == 0, o, r);
        } catch (const std::exception& e) {
          std::cerr << t.name << ": " << e.what() << "\n";
        }
        for (auto& [m, v] : r) all[placement][t.name][m].push_back(v);
        std::cerr << placement << " rep " << rep << " " << t.name << " done\n";
      }
    }
  }

  // ---- report
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? NAN : v[v.size() / 2];
  };
  auto spread = [&](const std::vector<double>& v) {
    if (v.size() < 2) return 0.0;
    auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return (*hi - *lo) / median(v) * 100;
  };
  std::ostringstream md;
  md << "# Benchmarks\n\n"
     << "Generated by `./bench/run.sh` (npipe " << npipe::version << ", " << std::thread::hardware_concurrency()
     << " CPUs). Server and client are separate processes; each cell is the median of " << reps
     << " runs, ± the spread (max−min)/median. Every transport answers a request with an echo, "
     << "or for the throughput rows with a 1-byte ack (so throughput is request bytes per second). "
     << "The raw baselines speak a 4-byte length prefix over a Unix stream socket: uds-stream is a blocking "
     << "server with a thread per connection (as npipe-message and npipe-byte, the blocking API), uds-epoll one "
     << "thread with epoll and non-blocking sockets; each ratio is to the better of the two for that metric. "
     << "asio-uds and libuv-pipe are what a user would write instead with Asio or libuv (one thread each, the "
     << "same framing). npipe-async is async_server::serve() on two threads (one io_context), npipe-async-1t on "
     << "one, as the Asio and libuv servers; NNG and ZeroMQ use one REQ/REP socket each.\n\n";
  // The baseline of a metric: the best raw row of the table (local or
  // remote) for it, so no ratio is against a weaker server than a user
  // could write in a few lines.
  using by_transport = std::map<std::string, std::map<std::string, std::vector<double>>>;
  auto best_raw = [&](by_transport& by_t, const std::string& m, bool remote) {
    std::pair<std::string, double> best{"", NAN};
    for (auto& t : transports) {
      if (!t.raw || t.remote != remote || !by_t[t.name].count(m)) continue;
      double v = median(by_t[t.name][m]);
      if (!(v > 0)) return std::pair<std::string, double>{"", NAN}; // below what RSS resolves: no ratio to take
      if (best.first.empty() || (lower_is_better(m) ? v < best.second : v > best.second)) best = {t.name, v};
    }
    return best;
  };
  struct group {
    const char* title;
    bool remote;
  };
  for (const group& g : {group{"", false}, group{"Remote pipes over loopback TCP: ", true}}) {
    std::vector<bench::transport> cols;
    for (auto& t : transports)
      if (t.remote == g.remote) cols.push_back(t);
    if (cols.size() < 2) continue;
    if (g.remote)
      md << "# Remote pipes\n\nLoopback TCP. tcp-raw is the baseline: the raw UDS server's framing and threads over "
            "TCP. npipe-remote-plain and npipe-remote-tls are the blocking npipe server behind a gateway in the same "
            "process (the client dials \\\\127.0.0.1:PORT\\pipe\\NAME), plaintext (--insecure) and TLS 1.3 "
            "with a pre-shared key (psk_dhe_ke, TLS_AES_128_GCM_SHA256); npipe-remote-tls-cert the same with mutual "
            "certificates (ECDSA P-256, scripts/make-certs.sh), where a client resumes its session with the ticket "
            "of its previous connect. Each remote request crosses the gateway (TCP to Unix socket and back).\n\n";
    for (auto& [placement, by_t] : all) {
      md << "## " << g.title << placement << "\n\n| metric |";
      for (auto& t : cols) md << " " << t.name << " |";
      md << "\n|---|";
      for (std::size_t i = 0; i < cols.size(); ++i) md << "---|";
      md << "\n";
      for (auto& [m, label] : metrics) {
        md << "| " << label << " |";
        for (auto& t : cols) {
          auto it = by_t.find(t.name);
          if (it == by_t.end() || !it->second.count(m)) {
            md << " n/a |";
            continue;
          }
          auto& v = it->second.at(m);
          md << " " << fmt(median(v));
          if (v.size() > 1) md << " ±" << fmt(spread(v)) << "%";
          md << " |";
        }
        md << "\n";
      }
      md << "\n**Ratios against the best raw row** (" << placement
         << "; per metric, the raw server that did best, named in the last column; >1 means faster, whatever the "
            "metric: for times and memory the ratio is baseline/value)\n\n| metric |";
      for (auto& t : cols) md << " " << t.name << " |";
      md << " baseline |\n|---|";
      for (std::size_t i = 0; i <= cols.size(); ++i) md << "---|";
      md << "\n";
      for (auto& [m, label] : metrics) {
        auto [base_name, b] = best_raw(by_t, m, g.remote);
        if (base_name.empty()) continue;
        md << "| " << label << " |";
        for (auto& t : cols) {
          if (!by_t[t.name].count(m)) {
            md << " n/a |";
            continue;
          }
          double v = median(by_t[t.name][m]);
          if (!(v > 0)) { // idle memory below what RSS resolves
            md << " n/a |";
            continue;
          }
          double ratio = lower_is_better(m) ? b / v : v / b;
          md << " " << fmt(ratio) << "× |";
        }
        md << " " << base_name << " |\n";
      }
      md << "\n";
    }
  }
  // The targets from the benchmark issue, as ratios to the best raw row on
  // the same core (local rows against the local baselines, remote rows
  // against raw TCP), and the remote idle-memory bounds in KiB.
  {
    auto& same = all["same core"];
    struct target {
      const char* who;
      const char* metric;
      const char* text;
      double bound;        // a ratio as in the tables (>1 is better), or with `absolute` a value
      bool remote = false; // against the remote baseline
      bool absolute = false; // a value no larger than `bound`
    };
    std::vector<target> targets;
    for (const char* who : {"npipe-message", "npipe-async", "npipe-async-1t"}) {
      targets.push_back({who, "rtt_p50_64B", "round trip 64 B no worse than 1.15x raw", 1 / 1.15});
      targets.push_back({who, "rtt_p50_4KiB", "round trip 4 KiB no worse than 1.15x raw", 1 / 1.15});
      targets.push_back({who, "thr_MiBps_1MiB", "1 MiB throughput at least 0.9x raw", 0.9});
      targets.push_back({who, "connect_req_close_per_s", "connect+request+close at least 0.8x raw", 0.8});
      targets.push_back({who, "clients64_req_per_s", "64 clients at least 0.9x raw", 0.9});
    }
    targets.push_back({"npipe-remote-plain", "rtt_p50_64B", "round trip 64 B no worse than 1.3x raw TCP", 1 / 1.3, true});
    targets.push_back({"npipe-remote-plain", "thr_MiBps_1MiB", "1 MiB throughput at least 0.7x raw TCP", 0.7, true});
    targets.push_back({"npipe-remote-tls", "thr_MiBps_1MiB", "1 MiB throughput at least 0.5x raw TCP", 0.5, true});
    targets.push_back({"npipe-remote-tls", "connect_req_close_per_s", "connect+request+close at least 0.3x raw TCP", 0.3, true});
    targets.push_back({"npipe-remote-tls-cert", "connect_req_close_per_s", "connect+request+close at least 0.3x raw TCP", 0.3, true});
    targets.push_back({"npipe-remote-plain", "idle_conn_KiB", "memory per idle connection at most 16 KiB", 16, true, true});
    targets.push_back({"npipe-remote-tls", "idle_conn_KiB", "memory per idle connection at most 24 KiB", 24, true, true});
    md << "## Targets (same core, against the best raw row)\n\n"
       << "The ratio is the median run's; \"met\" is yes only when every run clears the target, no when none "
          "does, and \"within spread\" when the runs fall on both sides (then it is not claimed either way). "
          "Memory is measured once.\n\n"
       << "| target | transport | ratio (runs) | baseline | met |\n|---|---|---|---|---|\n";
    for (auto& t : targets) {
      if (!same[t.who].count(t.metric)) continue;
      const auto& runs = same[t.who][t.metric];
      if (t.absolute) {
        double v = median(runs);
        md << "| " << t.text << " | " << t.who << " | " << fmt(v) << " KiB | - | " << (v <= t.bound ? "yes" : "**no**")
           << " |\n";
        continue;
      }
      auto [base_name, b] = best_raw(same, t.metric, t.remote);
      if (base_name.empty()) continue;
      auto ratio_of = [&](double v) { return lower_is_better(t.metric) ? b / v : v / b; };
      double ratio = ratio_of(median(runs));
      auto [lo_it, hi_it] = std::minmax_element(runs.begin(), runs.end());
      double r1 = ratio_of(*lo_it), r2 = ratio_of(*hi_it);
      double lo = std::min(r1, r2), hi = std::max(r1, r2);
      const char* met = lo >= t.bound ? "yes" : hi < t.bound ? "**no**" : "within spread";
      md << "| " << t.text << " | " << t.who << " | " << fmt(ratio) << "× (" << fmt(lo) << "–" << fmt(hi) << ") | "
         << base_name << " | " << met << " |\n";
    }
    md << "\n";
  }
  if (!o.syscalls.empty()) {
    std::ifstream in(o.syscalls);
    if (in && in.peek() != std::ifstream::traits_type::eof()) md << in.rdbuf() << "\n";
  }
  md << "![chart](benchmarks.png)\n";
  std::ofstream(o.out) << md.str();

  // Data for the chart: ratio to the best raw row, same core, a row per metric.
  std::ofstream dat(o.data);
  dat << "metric";
  for (auto& t : transports)
    if (!t.remote) dat << " " << t.name;
  dat << "\n";
  auto& same = all["same core"];
  for (auto& [m, label] : metrics) {
    auto [base_name, b] = best_raw(same, m, false);
    if (base_name.empty()) continue;
    dat << m;
    for (auto& t : transports) {
      if (t.remote) continue;
      double v = same[t.name].count(m) ? median(same[t.name][m]) : NAN;
      dat << " " << (lower_is_better(m) ? b / v : v / b);
    }
    dat << "\n";
  }
  std::cout << md.str();
  std::string cleanup = "rm -rf " + dir;
  return std::system(cleanup.c_str()) == 0 ? 0 : 0;
}
