// SPDX-License-Identifier: MIT
// npipe: the command-line tool. `serve` and `send` are the seed sample's
// NamedPipeServer and NamedPipeClient.

#include <npipe/async.hpp>
#include <npipe/npipe.hpp>
#ifndef _WIN32
#include <npipe/remote.hpp>
#endif
#include <asio/io_context.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>

#ifdef _WIN32
#include <windows.h>
#include <fcntl.h>
#include <io.h>
#else
#include <pthread.h>
#include <signal.h>
#endif

namespace {

std::mutex out_mu;

int report(const std::error_code& ec, const std::string& what) {
  std::lock_guard lk(out_mu);
  std::cerr << "npipe: " << what << ": error " << static_cast<int>(npipe::condition_of(ec)) << " ("
            << npipe::to_string(npipe::condition_of(ec)) << "): " << ec.message() << "\n";
  if (auto d = npipe::last_error_detail(); !d.empty()) std::cerr << "npipe: " << d << "\n";
  return 1;
}

std::string now_text() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
#ifdef _WIN32
  localtime_s(&tm, &t);
#else
  localtime_r(&t, &tm);
#endif
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string as_text(const std::vector<std::byte>& v) { return {reinterpret_cast<const char*>(v.data()), v.size()}; }

npipe::pipe_name parse_name(const std::string& text) {
  std::error_code ec;
  auto n = npipe::pipe_name::parse(text, ec);
  if (ec) {
    std::cerr << "npipe: '" << text << "' is not a pipe name: " << ec.message() << "\n";
    std::exit(2);
  }
  return n;
}

// ------------------------------------------------------------ remote / TLS

// TLS options shared by clients (send, call, bench) and listeners (gateway,
// serve --remote). Each can also come from an environment variable.
struct tls_args {
  std::string ca, cert, key, psk_file, psk_identity, server_name;
  bool insecure = false;
};

void add_tls_options(CLI::App* c, tls_args& t, bool listener) {
  auto* g = c->add_option_group("TLS", "Remote pipes: TLS 1.3 with certificates or a pre-shared key");
  g->add_option("--ca", t.ca, listener ? "CA file: clients must present a certificate it signed"
                                       : "CA file that signed the gateway's certificate")
      ->envname("NPIPE_TLS_CA");
  g->add_option("--cert", t.cert, "This end's certificate (PEM)")->envname("NPIPE_TLS_CERT");
  g->add_option("--key", t.key, "This end's private key (PEM)")->envname("NPIPE_TLS_KEY");
  g->add_option("--psk-file", t.psk_file, "Pre-shared keys, IDENTITY:HEXKEY per line (chmod 600)")
      ->envname("NPIPE_TLS_PSK_FILE");
  if (!listener) {
    g->add_option("--psk-identity", t.psk_identity, "Which identity of --psk-file to use (default: the first)");
    g->add_option("--server-name", t.server_name, "Name the gateway's certificate must carry (default: HOST)");
  }
  g->add_flag("--insecure", t.insecure, "Plaintext TCP: no authentication, no encryption (both ends must say so)");
}

#ifndef _WIN32
// The options the flags ask for; false (with a message) when unusable.
bool tls_options_of(const tls_args& t, npipe::tls_options& o) {
  o.ca_file = t.ca;
  o.cert_file = t.cert;
  o.key_file = t.key;
  o.server_name = t.server_name;
  o.insecure = t.insecure;
  if (!t.psk_file.empty()) {
    std::error_code ec;
    o.psk = npipe::load_psk_file(t.psk_file, ec);
    if (ec) return report(ec, "cannot use --psk-file"), false;
    if (!t.psk_identity.empty()) {
      auto it = std::find_if(o.psk.begin(), o.psk.end(), [&](auto& k) { return k.identity == t.psk_identity; });
      if (it == o.psk.end()) {
        std::cerr << "npipe: " << t.psk_file << " has no key for identity '" << t.psk_identity << "'\n";
        return false;
      }
      std::rotate(o.psk.begin(), it, it + 1);
    }
  }
  if (t.insecure) {
    std::lock_guard lk(out_mu);
    std::cerr << "npipe: WARNING: --insecure: plaintext TCP, nobody is authenticated and anyone on the path can read "
                 "and change the data\n";
  }
  return true;
}
#endif

// ---------------------------------------------------------------- serve

struct serve_args {
  std::string name, type = "message", access = "user", dir;
  unsigned max_instances = npipe::defaults::max_instances;
  unsigned max_connections = npipe::defaults::max_connections;
  unsigned max_per_user = 0;
  unsigned max_in_flight = npipe::defaults::max_in_flight;
  std::size_t max_queued = npipe::defaults::max_queued_bytes;
  std::size_t max_message = npipe::defaults::max_message_size;
  long idle_ms = -1, handshake_ms = npipe::defaults::handshake_timeout.count(), grace_ms = npipe::defaults::stop_grace.count();
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  bool once = false, echo = false, verbose = false, quiet = false;
  // Remote clients: through a gateway started here (--remote), or through a
  // separately run `npipe gateway` (--accept-remote).
  bool remote = false, accept_remote = false;
  std::vector<std::string> listen;
  std::uint16_t port = 4455;
  tls_args tls;
};

std::string describe(const npipe::peer_identity& p) {
  if (p.is_remote()) return "remote " + p.remote_address + " (" + p.user + ")";
  std::string s = "pid " + std::to_string(p.pid);
  if (p.uid >= 0) s += ", uid " + std::to_string(p.uid); // POSIX only
  if (!p.user.empty()) s += " (" + p.user + ")";
  return s;
}

// The options a serve command asks for; false (with a message) when unusable.
bool server_options_of(const serve_args& a, npipe::server_options& o) {
  o.type = a.type == "byte" ? npipe::pipe_type::byte : npipe::pipe_type::message;
  o.max_instances = a.max_instances;
  o.max_connections = a.max_connections;
  o.max_per_user = a.max_per_user;
  o.max_in_flight = a.max_in_flight;
  o.max_queued_bytes = a.max_queued;
  o.max_message_size = a.max_message;
  o.idle_timeout = npipe::timeout(a.idle_ms);
  o.handshake_timeout = npipe::timeout(a.handshake_ms);
  o.pipe_dir = a.dir;
  o.accept_remote = a.remote || a.accept_remote;
  if (a.access == "everyone") o.access = npipe::access_policy::everyone();
  else if (a.access.rfind("group:", 0) == 0) o.access = npipe::access_policy::group(std::stoul(a.access.substr(6)));
  else if (a.access != "user") {
    std::cerr << "npipe: --access takes user, everyone or group:GID\n";
    return false;
  }
  return true;
}

// The seed's answer: "<version> | <date time>", or the request itself (--echo).
std::string answer(const serve_args& a, std::string_view request) {
  if (!a.quiet) {
    std::lock_guard lk(out_mu);
    std::cout << "Bytes received: " << request.size() << std::endl;
  }
  return a.echo ? std::string(request) : std::string("npipe ") + npipe::version + " | " + now_text();
}

void print_listening(const npipe::pipe_name& name, const std::string& where) {
  std::lock_guard lk(out_mu);
  std::cout << "Listening on " << name.str() << " (" << where << ")" << std::endl;
}

#ifndef _WIN32
std::string security_of(const npipe::tls_options& t) {
  if (t.insecure) return "INSECURE plaintext";
  std::string s = "TLS 1.3";
  if (!t.ca_file.empty()) s += ", client certificates signed by " + t.ca_file;
  if (!t.psk.empty()) s += std::string(t.ca_file.empty() ? ", " : " or ") + std::to_string(t.psk.size()) + " pre-shared key(s)";
  return s;
}

// -v: a line per remote client event.
void log_gateway_events(npipe::gateway& gw) {
  gw.on_event([](const npipe::gateway_event& e) {
    using k = npipe::gateway_event::kind;
    std::string who = "remote " + e.address + (e.user.empty() ? "" : " (" + e.user + ")");
    std::lock_guard lk(out_mu);
    switch (e.what) {
    case k::relayed: std::cout << who << " -> " << e.pipe << std::endl; break;
    case k::refused:
      std::cout << "refused " << who << (e.pipe.empty() ? "" : " asking for " + e.pipe) << ": " << e.reason << std::endl;
      break;
    case k::tls_failed: std::cout << "TLS failed for " << who << ": " << e.reason << std::endl; break;
    case k::closed: std::cout << who << " left " << e.pipe << ": " << e.reason << std::endl; break;
    }
  });
}

void print_gateway(const npipe::gateway_options& g, std::uint16_t port) {
  std::lock_guard lk(out_mu);
  std::string where;
  for (auto& l : g.listen) where += (where.empty() ? "" : ", ") + l;
  std::cout << "Remote access on port " << port << " (" << (where.empty() ? "every interface" : where) << "; "
            << security_of(g.tls) << ")" << std::endl;
}

// Block SIGINT/SIGTERM in every thread (call first); wait_for_stop() returns when one comes.
sigset_t stop_signals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  return sigs;
}

struct gateway_args {
  std::vector<std::string> exports, listen;
  std::uint16_t port = 4455;
  long idle_ms = 300'000, handshake_ms = npipe::defaults::handshake_timeout.count();
  unsigned max_connections = npipe::defaults::max_connections, threads = 2;
  std::string dir;
  bool verbose = false;
  tls_args tls;
};

// One port for every exported pipe on this machine (as SMB serves Windows pipes).
int run_gateway(const gateway_args& a) {
  auto sigs = stop_signals();
  npipe::gateway_options g;
  g.exports = a.exports;
  g.listen = a.listen;
  g.port = a.port;
  g.idle_timeout = npipe::timeout(a.idle_ms);
  g.handshake_timeout = npipe::timeout(a.handshake_ms);
  g.max_connections = a.max_connections;
  g.threads = a.threads;
  g.pipe_dir = a.dir;
  if (!tls_options_of(a.tls, g.tls)) return 2;
  std::error_code ec;
  npipe::gateway gw;
  gw.open(g, ec);
  if (ec) return report(ec, "cannot start the gateway");
  if (a.verbose) log_gateway_events(gw);
  print_gateway(g, gw.port());
  {
    std::lock_guard lk(out_mu);
    std::cout << "Exporting:";
    for (auto& e : a.exports) std::cout << " " << e;
    std::cout << std::endl;
  }
  int s = 0;
  sigwait(&sigs, &s);
  auto st = gw.stats();
  gw.close();
  if (a.verbose) {
    std::cout << "accepted " << st.accepted << ", relayed " << st.relayed << ", TLS failures " << st.tls_failed
              << ", refused " << st.refused << std::endl;
  }
  return 0;
}

#endif // !_WIN32

#ifdef _WIN32
// Ctrl-C / Ctrl-Break / closing the console: the serve loop's stop.
std::function<void()> console_stop;
std::mutex console_mu;

BOOL WINAPI on_console_event(DWORD) {
  std::lock_guard lk(console_mu);
  if (console_stop) console_stop();
  return TRUE;
}
#endif

// The seed's server, as a real one: any number of clients at once on the
// async runtime (epoll on Linux, the I/O completion port on Windows); each
// message gets "<version> | <date time>" (or itself, with --echo). Ctrl-C
// stops gracefully: no new clients, requests in flight are answered, then
// every connection closes.
int run_serve(const serve_args& a) {
  npipe::server_options o;
  if (!server_options_of(a, o)) return 2;
#ifndef _WIN32
  auto sigs = stop_signals(); // every thread inherits the mask; one thread waits for them
#endif
  auto name = parse_name(a.name);
  asio::io_context ctx;
  auto work = asio::make_work_guard(ctx);
  npipe::async_server srv(ctx.get_executor());
  std::error_code ec;
  srv.open(name, o, ec);
  if (ec) return report(ec, "cannot serve " + name.str());
  print_listening(name, srv.native_path());
#ifndef _WIN32
  npipe::gateway gw;
  if (a.remote) {
    npipe::gateway_options g;
    g.listen = a.listen;
    g.port = a.port;
    g.exports = {name.name()};
    g.pipe_dir = a.dir;
    if (!tls_options_of(a.tls, g.tls)) return 2;
    gw.open(g, ec);
    if (ec) return report(ec, "cannot open remote access");
    if (a.verbose) log_gateway_events(gw);
    print_gateway(g, gw.port());
  }
#endif

  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stop_now = false;
  auto request_stop = [&] {
    std::lock_guard lk(stop_mu);
    stop_now = true;
    stop_cv.notify_all();
  };
  if (a.verbose) {
    srv.on_client_event([](const npipe::client_event& e) {
      std::lock_guard lk(out_mu);
      if (e.what == npipe::client_event::kind::connected) {
        std::cout << "client " << e.connection_id << " connected: " << describe(e.peer) << std::endl;
      } else {
        std::cout << "client " << e.connection_id << " disconnected after " << e.requests << " request"
                  << (e.requests == 1 ? "" : "s");
        if (e.reason) std::cout << ": " << e.reason.message() << (e.detail.empty() ? "" : " (" + e.detail + ")");
        std::cout << std::endl;
      }
    });
  }
  std::atomic<bool> answered{false};
  srv.serve([&](npipe::request r) {
    std::string reply = answer(a, r.text());
    if (a.once && !answered.exchange(true)) request_stop();
    return reply;
  });

  std::vector<std::thread> pool;
  for (unsigned i = 0; i < a.threads; ++i) pool.emplace_back([&ctx] { ctx.run(); });
#ifdef _WIN32
  {
    std::lock_guard lk(console_mu);
    console_stop = request_stop;
  }
  ::SetConsoleCtrlHandler(on_console_event, TRUE);
#else
  std::thread sig([&] {
    int s = 0;
    sigwait(&sigs, &s);
    request_stop();
  });
  sig.detach();
#endif
  {
    std::unique_lock lk(stop_mu);
    stop_cv.wait(lk, [&] { return stop_now; });
  }
#ifdef _WIN32
  {
    std::lock_guard lk(console_mu);
    console_stop = nullptr;
  }
#else
  gw.close(); // no new remote clients; relayed ones end with their local connections
#endif
  srv.stop(npipe::timeout(a.grace_ms)); // the name goes at once; answers in flight still go out
  work.reset();
  ctx.stop();
  for (auto& t : pool) t.join();
  return 0;
}

// ----------------------------------------------------------------- send

// Client options for `name`: the pipe directory, and TLS for remote names.
bool client_options_of(const npipe::pipe_name& name, const std::string& dir, const tls_args& tls,
                       npipe::client_options& o) {
  o.pipe_dir = dir;
  if (name.is_local()) return true;
#ifdef _WIN32
  (void)tls;
  return true; // the library says remote pipes are not in this build
#else
  return tls_options_of(tls, o.tls);
#endif
}

int run_send(const std::string& name_text, const std::string& text, const std::string& file, long timeout_ms,
             const std::string& dir, const tls_args& tls, bool raw) {
  std::string message;
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::cerr << "npipe: cannot read " << file << "\n";
      return 2;
    }
    message.assign(std::istreambuf_iterator<char>(in), {});
  } else if (text == "-" || text.empty()) {
#ifdef _WIN32
    _setmode(_fileno(stdin), _O_BINARY); // the message byte for byte
#endif
    message.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    message = text;
  }
  auto name = parse_name(name_text);
  npipe::client_options o;
  if (!client_options_of(name, dir, tls, o)) return 2;
  std::error_code ec;
  auto c = npipe::connect(name, o, npipe::timeout(timeout_ms), ec);
  if (ec) return report(ec, "cannot open " + name.str());
  c.write(message, ec);
  if (ec) return report(ec, "write failed");
  auto reply = c.receive(npipe::timeout(timeout_ms), ec);
  if (ec) return report(ec, "no response");
  if (raw) {
#ifdef _WIN32
    std::cout.flush();
    _setmode(_fileno(stdout), _O_BINARY); // the reply byte for byte: no CR before LF, no ^Z as end of file
#endif
    std::cout << as_text(reply) << std::flush;
  }
  else std::cout << "Response received: [" << as_text(reply) << "]" << std::endl;
  return 0;
}

// A quick check against a running server: round-trip latency, then throughput.
int run_bench(const std::vector<std::string>& names, std::size_t count, std::size_t size, double seconds,
              const std::string& dir, const tls_args& tls) {
  for (auto& text : names) {
    auto name = parse_name(text);
    npipe::client_options o;
    if (!client_options_of(name, dir, tls, o)) return 2;
    std::error_code ec;
    auto c = npipe::connect(name, o, npipe::defaults::connect_timeout, ec);
    if (ec) return report(ec, "cannot open " + name.str());
    std::vector<std::byte> small(64, std::byte{'x'});
    std::vector<double> us;
    us.reserve(count);
    for (std::size_t i = 0; i < count + count / 10; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      c.transact(small, npipe::defaults::connect_timeout, ec);
      if (ec) return report(ec, "transact failed");
      if (i >= count / 10) // the first tenth warms up
        us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(us.begin(), us.end());
    std::vector<std::byte> big(size, std::byte{'A'});
    std::size_t sent = 0;
    auto t0 = std::chrono::steady_clock::now();
    auto window = std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() - t0 < window) {
      c.transact(big, npipe::defaults::connect_timeout, ec);
      if (ec) return report(ec, "transact failed");
      sent += size;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: round trip 64 B p50 %.1f us, p99 %.1f us (%zu samples); %zu-byte requests %.1f MiB/s\n",
                name.str().c_str(), us[us.size() / 2], us[us.size() * 99 / 100], us.size(), size,
                static_cast<double>(sent) / secs / (1 << 20));
  }
  return 0;
}

int run_list(const std::string& dir) {
  std::error_code ec;
  auto pipes = npipe::list_local_pipes(ec, dir);
  if (ec) return report(ec, "cannot list " + npipe::pipe_directory(dir));
  std::cout << "pipe directory: " << npipe::pipe_directory(dir) << "\n";
  for (auto& p : pipes) {
    std::cout << (p.live ? "live  " : "stale ");
    if (p.owner_uid >= 0) std::cout << "uid " << p.owner_uid << "  ";
    std::cout << p.file << "\n";
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"npipe: named pipes with Win32 semantics on Linux and Windows"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("npipe ") + npipe::version);

  serve_args sa;
  auto* serve = app.add_subcommand("serve", "Create a pipe and answer each message (the seed's NamedPipeServer)");
  serve->add_option("name", sa.name, "Pipe name, e.g. \\\\.\\pipe\\tpipe")->required();
  serve->add_flag("--once", sa.once, "Serve one request from one client, then exit (as the seed does)");
  serve->add_flag("--echo", sa.echo, "Reply with the request itself instead of the version and time");
  serve->add_option("--type", sa.type, "Pipe type")->check(CLI::IsMember({"message", "byte"}))->capture_default_str();
  serve->add_option("--max-instances", sa.max_instances, "Most clients at once (1-254; 255: unlimited)")
      ->check(CLI::Range(1u, 255u))->capture_default_str();
  serve->add_option("--max-connections", sa.max_connections, "Most clients at once, whatever --max-instances says")
      ->check(CLI::Range(1u, 1u << 24))->capture_default_str();
  serve->add_option("--threads", sa.threads, "Threads serving clients")->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  serve->add_option("--max-in-flight", sa.max_in_flight, "Requests of one client worked on at once")
      ->check(CLI::Range(1u, 1u << 20))->capture_default_str();
  serve->add_option("--max-queued", sa.max_queued, "Reply bytes queued for one slow client before it is paused")
      ->capture_default_str();
  serve->add_option("--idle-timeout", sa.idle_ms, "Close a client idle this many ms (-1: never)")->capture_default_str();
  serve->add_option("--handshake-timeout", sa.handshake_ms, "Close a client that has not said hello within ms")
      ->capture_default_str();
  serve->add_option("--grace", sa.grace_ms, "On Ctrl-C, ms to let requests in flight finish")->capture_default_str();
  serve->add_flag("-q,--quiet", sa.quiet, "Do not print a line per message");
  serve->add_option("--max-per-user", sa.max_per_user, "Most clients from one user at once (0: no limit)")
      ->capture_default_str();
  serve->add_option("--max-message", sa.max_message, "Largest accepted message, bytes")->capture_default_str();
  serve->add_option("--access", sa.access, "Who may connect: user, everyone, group:GID")->capture_default_str();
  serve->add_option("--dir", sa.dir, "Pipe directory (Linux; default $NPIPE_DIR or /tmp/.npipe)");
  serve->add_flag("-v,--verbose", sa.verbose, "Print a line per client: connected, and disconnected (why)");
#ifndef _WIN32
  serve->add_flag("--remote", sa.remote, "Also serve remote clients: listen on TCP (one port) with TLS");
  serve->add_flag("--accept-remote", sa.accept_remote, "Accept remote clients relayed by a running `npipe gateway`");
  serve->add_option("--listen", sa.listen, "With --remote: addresses to listen on (default: every interface)");
  serve->add_option("--port", sa.port, "With --remote: TCP port")->capture_default_str();
  add_tls_options(serve, sa.tls, true);
#endif

  std::string name, text, file, dir;
  long timeout_ms = 5000;
  tls_args client_tls;
  auto add_client = [&](CLI::App* c) {
    c->add_option("name", name, "Pipe name, e.g. \\\\.\\pipe\\tpipe")->required();
    c->add_option("message", text, "Message text; '-' or none reads standard input");
    c->add_option("-f,--file", file, "Send the contents of this file");
    c->add_option("-t,--timeout", timeout_ms, "Milliseconds to wait for a free instance and for the reply")
        ->capture_default_str();
    c->add_option("--dir", dir, "Pipe directory (Linux; default $NPIPE_DIR or /tmp/.npipe)");
    add_tls_options(c, client_tls, false);
  };
  auto* send = app.add_subcommand("send", "Send a message and print the response (the seed's NamedPipeClient)");
  add_client(send);
  auto* call = app.add_subcommand("call", "Send a message and write the raw response to standard output");
  add_client(call);
  auto* list = app.add_subcommand("list", "List the pipes on this machine");
  list->add_option("--dir", dir, "Pipe directory (Linux; default $NPIPE_DIR or /tmp/.npipe)");

  std::vector<std::string> bench_names;
  std::size_t bench_count = 2000, bench_size = 64 << 10;
  double bench_seconds = 1.0;
  auto* bench = app.add_subcommand("bench", "Measure round trips and throughput against running servers");
  bench->add_option("names", bench_names, "Pipe names")->required();
  bench->add_option("-n,--count", bench_count, "Round trips to time")->check(CLI::Range(10ul, 10'000'000ul))
      ->capture_default_str();
  bench->add_option("-s,--size", bench_size, "Request size for the throughput run, bytes")->capture_default_str();
  bench->add_option("--seconds", bench_seconds, "Length of the throughput run")->capture_default_str();
  bench->add_option("--dir", dir, "Pipe directory (Linux; default $NPIPE_DIR or /tmp/.npipe)");
  add_tls_options(bench, client_tls, false);

#ifndef _WIN32
  gateway_args ga;
  auto* gateway = app.add_subcommand("gateway", "Serve this machine's exported pipes to remote clients on one TCP port");
  gateway->add_option("--export", ga.exports, "Pipe NAME remote clients may reach (repeat; '*' for all)")->required();
  gateway->add_option("--listen", ga.listen, "Addresses to listen on (default: every interface)");
  gateway->add_option("--port", ga.port, "TCP port")->capture_default_str();
  gateway->add_option("--idle-timeout", ga.idle_ms, "Close a relayed client quiet this many ms (-1: never)")
      ->capture_default_str();
  gateway->add_option("--handshake-timeout", ga.handshake_ms, "Drop a client not through TLS and hello within ms")
      ->capture_default_str();
  gateway->add_option("--max-connections", ga.max_connections, "Most remote clients at once")->capture_default_str();
  gateway->add_option("--threads", ga.threads, "I/O threads")->check(CLI::Range(1u, 1024u))->capture_default_str();
  gateway->add_option("--dir", ga.dir, "Pipe directory (default $NPIPE_DIR or /tmp/.npipe)");
  gateway->add_flag("-v,--verbose", ga.verbose, "Print a line per remote client (relayed, refused and why, left) and counts when stopping");
  add_tls_options(gateway, ga.tls, true);
#endif

  CLI11_PARSE(app, argc, argv);
#ifndef _WIN32
  if (*gateway) return run_gateway(ga);
#endif
  if (*bench) return run_bench(bench_names, bench_count, bench_size, bench_seconds, dir, client_tls);
  if (*serve) return run_serve(sa);
  if (*send) return run_send(name, text, file, timeout_ms, dir, client_tls, false);
  if (*call) return run_send(name, text, file, timeout_ms, dir, client_tls, true);
  if (*list) return run_list(dir);
  return 0;
}
