// SPDX-License-Identifier: MIT
// The Linux pieces of `npipe`: stop signals, users and groups, TLS settings,
// remote access for serve, and the gateway subcommand.

#include "cli.hpp"

#include <npipe/remote.hpp>

#include <algorithm>
#include <iostream>
#include <thread>

#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>

namespace npipe_cli {

// ------------------------------------------------------------ stop signals

// The signals are blocked in the constructing thread, so every thread started
// afterwards inherits the mask and one thread of ours takes them with
// sigwait(): a stop runs the graceful path, never the default action (which
// for SIGHUP would end the process and leave a stale socket file).
struct stop_request::impl {
  sigset_t sigs;
  bool signalled = false; // under stop_request::mu_
  std::thread waiter;
};

stop_request::stop_request() : impl_(std::make_unique<impl>()) {
  sigemptyset(&impl_->sigs);
  for (int s : {SIGINT, SIGTERM, SIGHUP})
    sigaddset(&impl_->sigs, s);
  pthread_sigmask(SIG_BLOCK, &impl_->sigs, nullptr);
  impl_->waiter = std::thread([this] {
    int s = 0;
    sigwait(&impl_->sigs, &s);
    std::lock_guard lk(mu_);
    impl_->signalled = true;
    stop_ = true;
    cv_.notify_all();
  });
}

stop_request::~stop_request() {
  {
    std::lock_guard lk(mu_);
    if (!impl_->signalled) pthread_kill(impl_->waiter.native_handle(), SIGTERM); // ends its sigwait
  }
  impl_->waiter.join();
}

// ------------------------------------------------------------ users and groups

namespace {

// A POSIX id: decimal digits, at most 4294967294 ((uid_t)-1 means "none").
std::optional<std::uint32_t> posix_id(const std::string& s) {
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  auto v = std::stoull(s);
  if (v > 4294967294ull) return std::nullopt;
  return static_cast<std::uint32_t>(v);
}

} // namespace

npipe::access_policy parse_access(const std::string& text) {
  if (text == "user") return npipe::access_policy::current_user();
  if (text == "everyone") return npipe::access_policy::everyone();
  if (text.rfind("group:", 0) == 0) {
    std::string g = text.substr(6);
    if (auto gid = posix_id(g)) return npipe::access_policy::group(*gid);
    if (!g.empty() && g.find_first_not_of("0123456789+-") != std::string::npos) {
      if (const group* gr = ::getgrnam(g.c_str())) return npipe::access_policy::group(gr->gr_gid);
      throw usage_error("--access " + text + ": no group is called '" + g + "'");
    }
    throw usage_error("--access " + text + ": a group is a name or a GID from 0 to 4294967294");
  }
  throw usage_error("--access takes user, everyone, group:NAME or group:GID, not '" + text + "'");
}

void add_server_user_option(CLI::App* c, std::string& user) {
  c->add_option("--require-server-user", user,
                "Refuse the server unless it runs as this user (name or uid): a squatter that took the name gets "
                "nothing");
}

std::uint32_t parse_user(const std::string& text) {
  if (auto uid = posix_id(text)) return *uid;
  if (text.find_first_not_of("0123456789+-") != std::string::npos) {
    if (const passwd* pw = ::getpwnam(text.c_str())) return pw->pw_uid;
    throw usage_error("--require-server-user " + text + ": no user is called '" + text + "'");
  }
  throw usage_error("--require-server-user " + text + ": a user is a name or a uid from 0 to 4294967294");
}

// ------------------------------------------------------------ TLS

namespace {

// The TLS settings the flags ask for: 0, or the exit code after a message.
int tls_options_of(const tls_args& t, npipe::tls_options& o) {
  o.ca_file = t.ca;
  o.cert_file = t.cert;
  o.key_file = t.key;
  o.server_name = t.server_name;
  o.insecure = t.insecure;
  if (!t.psk_file.empty()) {
    std::error_code ec;
    o.psk = npipe::load_psk_file(t.psk_file, ec);
    if (ec) return report(ec, "cannot use --psk-file");
    if (!t.psk_identity.empty()) {
      auto it = std::find_if(o.psk.begin(), o.psk.end(), [&](auto& k) { return k.identity == t.psk_identity; });
      if (it == o.psk.end()) throw usage_error(t.psk_file + " has no key for --psk-identity '" + t.psk_identity + "'");
      std::rotate(o.psk.begin(), it, it + 1);
    }
  }
  if (t.insecure) {
    std::lock_guard lk(out_mu);
    std::cerr << "npipe: WARNING: --insecure: plaintext TCP, nobody is authenticated and anyone on the path can read "
                 "and change the data\n";
  }
  return 0;
}

std::string security_of(const npipe::tls_options& t) {
  if (t.insecure) return "INSECURE plaintext";
  std::string s = "TLS 1.3";
  if (!t.ca_file.empty()) s += ", client certificates signed by " + t.ca_file;
  if (!t.psk.empty())
    s += std::string(t.ca_file.empty() ? ", " : " or ") + std::to_string(t.psk.size()) + " pre-shared key(s)";
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
      std::cout << "refused " << who << (e.pipe.empty() ? "" : " asking for " + e.pipe) << ": " << e.reason
                << std::endl;
      break;
    case k::tls_failed: std::cout << "TLS failed for " << who << ": " << e.reason << std::endl; break;
    case k::closed: std::cout << who << " left " << e.pipe << ": " << e.reason << std::endl; break;
    case k::dropped: std::cout << "dropped unauthenticated " << who << ": " << e.reason << std::endl; break;
    }
  });
}

void print_gateway(const npipe::gateway_options& g, std::uint16_t port) {
  std::lock_guard lk(out_mu);
  std::string where;
  for (auto& l : g.listen)
    where += (where.empty() ? "" : ", ") + l;
  std::cout << "Remote access on port " << port << " (" << (where.empty() ? "every interface" : where) << "; "
            << security_of(g.tls) << ")" << std::endl;
}

} // namespace

int client_options_of(const npipe::pipe_name& name, const std::string& dir, const tls_args& tls,
                      const std::optional<std::uint32_t>& server_uid, npipe::client_options& o) {
  o.pipe_dir = dir;
  o.require_server_uid = server_uid;
  if (name.is_local()) return 0;
  return tls_options_of(tls, o.tls);
}

// --resume (gateway, serve --remote): only a gateway that verifies client
// certificates has sessions to resume; anywhere else the flag is a mistake.
void set_resumption(long seconds, const CLI::Option* given, npipe::gateway_options& g) {
  if (given && given->count() && g.tls.ca_file.empty())
    throw usage_error("--resume needs --ca: only a gateway that verifies client certificates resumes sessions");
  g.session_resumption = std::chrono::seconds(seconds);
}

// ------------------------------------------------------------ serve --remote

struct remote_access::impl {
  npipe::gateway gw;
  npipe::gateway_options opts;
};

remote_access::remote_access() = default;
remote_access::~remote_access() = default;

int remote_access::open(const npipe::pipe_name& name, const std::string& dir, const remote_args& a, bool verbose) {
  impl_ = std::make_unique<impl>();
  auto& g = impl_->opts;
  g.listen = a.listen;
  g.port = static_cast<std::uint16_t>(a.port);
  g.exports = {name.name()};
  g.pipe_dir = dir;
  if (int rc = tls_options_of(a.tls, g.tls); rc != 0) return rc;
  set_resumption(a.resume_s, a.resume_opt, g);
  std::error_code ec;
  impl_->gw.open(g, ec);
  if (ec) return report(ec, "cannot open remote access to " + name.str());
  if (verbose) log_gateway_events(impl_->gw);
  return 0;
}

void remote_access::announce() {
  if (impl_) print_gateway(impl_->opts, impl_->gw.port());
}

void remote_access::close() {
  if (impl_) impl_->gw.close();
}

void add_remote_options(CLI::App* serve, remote_args& a) {
  serve->add_flag("--remote", a.remote, "Also serve remote clients: listen on TCP (one port) with TLS");
  serve->add_flag("--accept-remote", a.accept_remote, "Accept remote clients relayed by a running `npipe gateway`");
  a.listen_opt =
      serve->add_option("--listen", a.listen, "With --remote: addresses to listen on (default: every interface)");
  a.port_opt =
      serve->add_option("--port", a.port, "With --remote: TCP port")->transform(whole(0, 65535))->capture_default_str();
  a.resume_opt = serve->add_option("--resume", a.resume_s,
                                   "With --remote and --ca: seconds after a full TLS handshake a client may resume "
                                   "with a ticket (0: never)")
                     ->transform(whole(0, 604800))
                     ->capture_default_str();
  add_tls_options(serve, a.tls, true, false);
}

void check_remote_options(remote_args& a) {
  if (a.remote) {
    tls_from_env(a.tls);
    return;
  }
  // Without --remote these would be ignored, and a user who meant to open
  // remote access would not learn that nothing listens.
  CLI::Option* o = a.listen_opt->count()   ? a.listen_opt
                  : a.port_opt->count()   ? a.port_opt
                  : a.resume_opt->count() ? a.resume_opt
                                          : any_given(a.tls);
  if (o) throw usage_error(o->get_name() + " needs --remote");
}

// ------------------------------------------------------------ npipe gateway

namespace {

struct gateway_args {
  std::vector<std::string> exports, listen;
  long port = 4455;
  long idle_ms = 300'000, handshake_ms = npipe::defaults::handshake_timeout.count(), auth_ms = 3'000;
  unsigned max_connections = npipe::defaults::max_connections, threads = 2;
  unsigned max_unauthenticated = 64, max_unauthenticated_per_address = 16;
  long resume_s = 600;
  CLI::Option* resume_opt = nullptr;
  std::string dir;
  bool verbose = false;
  tls_args tls;
} ga;

} // namespace

CLI::App* add_gateway_command(CLI::App& app) {
  auto* gateway =
      app.add_subcommand("gateway", "Serve this machine's exported pipes to remote clients on one TCP port");
  gateway->add_option("--export", ga.exports, "Pipe NAME remote clients may reach (repeat; '*' for all)")->required();
  gateway->add_option("--listen", ga.listen, "Addresses to listen on (default: every interface)");
  gateway->add_option("--port", ga.port, "TCP port")->transform(whole(0, 65535))->capture_default_str();
  gateway->add_option("--idle-timeout", ga.idle_ms, "Close a relayed client quiet this many ms ('never': never)")
      ->transform(millis(true))
      ->capture_default_str();
  gateway->add_option("--handshake-timeout", ga.handshake_ms, "Drop a client not through TLS and hello within ms")
      ->transform(whole(1, 0x7fffffff))
      ->capture_default_str();
  gateway->add_option("--auth-timeout", ga.auth_ms, "Drop a client not through TLS (plaintext: its hello) within ms")
      ->transform(whole(1, 0x7fffffff))
      ->capture_default_str();
  gateway->add_option("--max-connections", ga.max_connections, "Most authenticated remote clients at once")
      ->transform(whole(1, 1u << 24))
      ->capture_default_str();
  gateway->add_option("--max-unauthenticated", ga.max_unauthenticated,
                      "Most connections not yet through TLS, from all addresses")
      ->transform(whole(1, 1u << 20))
      ->capture_default_str();
  gateway->add_option("--max-unauthenticated-per-address", ga.max_unauthenticated_per_address,
                      "Most connections not yet through TLS from one address (IPv6: one /64)")
      ->transform(whole(1, 1u << 20))
      ->capture_default_str();
  ga.resume_opt = gateway->add_option("--resume", ga.resume_s,
                      "With --ca: seconds after a full TLS handshake a client may resume with a ticket (0: never)")
      ->transform(whole(0, 604800))
      ->capture_default_str();
  gateway->add_option("--threads", ga.threads, "I/O threads")->transform(whole(1, 1024))->capture_default_str();
  gateway->add_option("--dir", ga.dir, "Pipe directory (default $NPIPE_DIR or /tmp/.npipe)");
  gateway->add_flag("-v,--verbose", ga.verbose,
                    "Print a line per remote client (relayed, refused and why, left) and counts when stopping");
  add_tls_options(gateway, ga.tls, true);
  return gateway;
}

// One port for every exported pipe on this machine (as SMB serves Windows pipes).
int run_gateway() {
  const auto& a = ga;
  npipe::gateway_options g;
  g.exports = a.exports;
  g.listen = a.listen;
  g.port = static_cast<std::uint16_t>(a.port);
  g.idle_timeout = ms(a.idle_ms);
  g.handshake_timeout = npipe::timeout(a.handshake_ms);
  g.auth_timeout = npipe::timeout(a.auth_ms);
  g.max_connections = a.max_connections;
  g.max_unauthenticated = a.max_unauthenticated;
  g.max_unauthenticated_per_address = a.max_unauthenticated_per_address;
  g.threads = a.threads;
  g.pipe_dir = a.dir;
  if (int rc = tls_options_of(a.tls, g.tls); rc != 0) return rc;
  set_resumption(a.resume_s, a.resume_opt, g);
  stop_request stop; // before the gateway's threads start: they inherit the signal mask
  std::error_code ec;
  npipe::gateway gw;
  gw.open(g, ec);
  if (ec) return report(ec, "cannot start the gateway");
  if (a.verbose) log_gateway_events(gw);
  print_gateway(g, gw.port());
  {
    std::lock_guard lk(out_mu);
    std::cout << "Exporting:";
    for (auto& e : a.exports)
      std::cout << " " << e;
    std::cout << std::endl;
  }
  stop.wait();
  auto st = gw.stats();
  gw.close();
  if (a.verbose) {
    std::cout << "accepted " << st.accepted << ", relayed " << st.relayed << ", TLS failures " << st.tls_failed
              << ", refused " << st.refused << ", dropped unauthenticated " << st.dropped << std::endl;
  }
  return 0;
}

} // namespace npipe_cli
