// SPDX-License-Identifier: MIT
#pragma once
// What the subcommands of `npipe` share: error reporting, option checks, TLS
// flags, and the per-platform pieces (stop signals, users and groups,
// remote access), which live in posix.cpp and win32.cpp.

#include <npipe/npipe.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace npipe_cli {

/// Serialises lines printed from several threads.
extern std::mutex out_mu;

/// Bad usage found after parsing (a name, a user, a file): main prints
/// "npipe: WHAT" and exits with 2, as for CLI11's own parse errors.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Print why an npipe call failed ("npipe: WHAT: error N (name): cause");
/// returns the exit code, 1.
int report(const std::error_code& ec, const std::string& what);

/// The pipe name, or a usage_error.
npipe::pipe_name parse_name(const std::string& text);

// ------------------------------------------------------------ option values
// CLI11 alone takes "-1" for a std::size_t as 2^64-1 and "010" as octal; these
// accept decimal digits only, in range.

/// A whole number from lo to hi.
CLI::Validator whole(std::uint64_t lo, std::uint64_t hi);
/// Milliseconds, 0 to 2^31-1; with never_ok also the word "never" (stored as -1).
CLI::Validator millis(bool never_ok = false);
/// Seconds, a number above 0 and at most `max`.
CLI::Validator seconds_up_to(double max);

/// The milliseconds of an option checked with millis(): npipe::forever for "never".
inline npipe::timeout ms(long v) { return v < 0 ? npipe::forever : npipe::timeout(v); }

/// A point in time for operations that share one --timeout.
class deadline {
public:
  explicit deadline(npipe::timeout t) : end_(std::chrono::steady_clock::now() + t) {}
  /// What is left, at least 0.
  npipe::timeout left() const {
    auto d = std::chrono::duration_cast<npipe::timeout>(end_ - std::chrono::steady_clock::now());
    return d.count() > 0 ? d : npipe::timeout(0);
  }
  bool passed() const { return std::chrono::steady_clock::now() >= end_; }

private:
  std::chrono::steady_clock::time_point end_;
};

// ------------------------------------------------------------ TLS flags

/// TLS options shared by clients (send, call, bench) and listeners (gateway,
/// serve --remote). Each can also come from an environment variable.
struct tls_args {
  std::string ca, cert, key, psk_file, psk_identity, server_name;
  bool insecure = false;
  std::vector<CLI::Option*> given; // the options, to tell whether any was used
};

/// Adds the TLS flags. `from_env`: also read NPIPE_TLS_*; serve reads them
/// itself, and only with --remote (tls_from_env), so that a variable exported
/// for clients does not make a local serve a usage error.
void add_tls_options(CLI::App* c, tls_args& t, bool listener, bool from_env = true);
/// Fills what the command line left empty from NPIPE_TLS_*.
void tls_from_env(tls_args& t);
/// The first TLS flag given on the command line, or null.
CLI::Option* any_given(const tls_args& t);

// ------------------------------------------------------------ per platform

/// Waits for a request to stop: SIGINT, SIGTERM or SIGHUP on Linux (blocked
/// in every thread started after construction, and waited for by one thread
/// of its own), Ctrl-C, Ctrl-Break or closing the console on Windows; or a
/// call to trigger() (serve --once).
class stop_request {
public:
  stop_request();
  ~stop_request();
  stop_request(const stop_request&) = delete;
  stop_request& operator=(const stop_request&) = delete;
  void wait();
  void trigger();

private:
  struct impl;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::unique_ptr<impl> impl_;
};

/// --access: user, everyone, group:NAME or group:GID.
npipe::access_policy parse_access(const std::string& text);
/// --require-server-user USER|UID (Linux; Windows has no such option: the
/// pipe's DACL protects the name).
void add_server_user_option(CLI::App* c, std::string& user);
/// Its value: the uid, or a usage_error.
std::uint32_t parse_user(const std::string& text);

/// Client options for `name`: the pipe directory, the server's user, and TLS
/// for remote names. 0, or the exit code to stop with (after printing why).
int client_options_of(const npipe::pipe_name& name, const std::string& dir, const tls_args& tls,
                      const std::optional<std::uint32_t>& server_uid, npipe::client_options& o);

/// serve --remote: the gateway for one pipe, opened before anything is announced.
struct remote_args {
  bool remote = false, accept_remote = false;
  std::vector<std::string> listen;
  long port = 4455;
  long resume_s = 600;
  tls_args tls;
  CLI::Option *listen_opt = nullptr, *port_opt = nullptr, *resume_opt = nullptr;
};
class remote_access {
public:
  remote_access();
  ~remote_access();
  /// Opens remote access to `name`; returns 0 or the exit code to stop with
  /// (after printing why).
  int open(const npipe::pipe_name& name, const std::string& dir, const remote_args& a, bool verbose);
  /// Prints where remote clients connect (after the pipe's "Listening on").
  void announce();
  /// No new remote clients.
  void close();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Adds the options of serve --remote and --accept-remote (Linux).
void add_remote_options(CLI::App* serve, remote_args& a);
/// Usage errors among them (e.g. --listen without --remote).
void check_remote_options(remote_args& a);

/// `npipe gateway` (Linux): adds the subcommand; null where there is none.
CLI::App* add_gateway_command(CLI::App& app);
int run_gateway();

// ------------------------------------------------------------ subcommands

struct serve_args {
  std::string name, type = "message", access = "user", dir;
  unsigned max_instances = npipe::defaults::max_instances;
  unsigned max_connections = npipe::defaults::max_connections;
  unsigned max_per_user = 0;
  unsigned max_in_flight = npipe::defaults::max_in_flight;
  std::size_t max_queued = npipe::defaults::max_queued_bytes;
  std::size_t max_message = npipe::defaults::max_message_size;
  long idle_ms = -1, handshake_ms = npipe::defaults::handshake_timeout.count(),
       grace_ms = npipe::defaults::stop_grace.count();
  unsigned threads = 1;
  bool once = false, echo = false, verbose = false, quiet = false;
  remote_args remote;
};
CLI::App* add_serve_command(CLI::App& app, serve_args& a);
int run_serve(serve_args& a);

struct client_args {
  std::string name, text, file, dir, server_user;
  long timeout_ms = 5000;
  tls_args tls;
  CLI::Option* message_opt = nullptr;
};
/// send (raw = false) and call (raw = true).
int run_send(const client_args& a, bool raw);

struct bench_args {
  std::vector<std::string> names;
  std::size_t count = 2000, size = 64 << 10;
  double seconds = 1.0;
  long timeout_ms = 5000;
  std::string dir, server_user;
  tls_args tls;
};
int run_bench(const bench_args& a);

int run_list(const std::string& dir, bool dir_given);

} // namespace npipe_cli
