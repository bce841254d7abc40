// SPDX-License-Identifier: MIT
#pragma once
// Shared test helpers: random pipe names, a private pipe directory per test,
// a watchdog, child processes, and byte patterns.

#include <npipe/npipe.hpp>

#include <npipe/detail/net.hpp> // async_error_code

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <future>
#include <memory>
#include <tuple>
#include <utility>
#include <string>
#include <vector>

namespace npipe::test {

/// A pipe name no other test (or run) uses: npipe-test-<pid>-<random>.
std::string random_name(std::string_view prefix = "t");
inline pipe_name random_pipe(std::string_view prefix = "t") { return pipe_name(random_name(prefix)); }

/// Deterministic pseudo-random bytes for `seed`.
std::vector<std::byte> pattern(std::size_t n, std::uint32_t seed);

/// Against an echo server: for each size n, writes messages of n, 1 and n
/// bytes from another thread while reading the echoes; every boundary and
/// byte must come back as written.
void expect_echo_keeps_boundaries(connection& c, std::initializer_list<std::size_t> sizes, timeout each);

/// Linux: a fresh pipe directory (mode 0755) set as $NPIPE_DIR for the test
/// and any process it forks; removed afterwards. Everywhere: arms a
/// watchdog, so a test that hangs is killed with a message instead of
/// stalling the run.
class local_test : public ::testing::Test {
protected:
  void SetUp() override;
  void TearDown() override;
  std::string dir_;
};

/// Arm (or with 0, disarm) this process's watchdog.
void watchdog(unsigned seconds);

#ifndef _WIN32
/// A one-byte signal between processes.
class signal_pipe {
public:
  signal_pipe();
  ~signal_pipe();
  void notify();
  /// True if notified within `t`.
  bool wait(std::chrono::milliseconds t = std::chrono::seconds(20));

private:
  int fds_[2];
};

/// A forked child running `fn`; its exit code is fn's return value
/// (exceptions and failed EXPECTs make it non-zero).
class child {
public:
  explicit child(std::function<int()> fn);
  ~child();
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  /// Wait for exit; returns the exit code, or 128+signal.
  int wait();
  void kill(int sig);
  int pid() const { return pid_; }

private:
  int pid_ = -1;
  int status_ = -1;
};

/// A child forked at construction that runs `fn` only after start(). Tests
/// fork first and open servers afterwards: forking a process whose threads
/// may hold allocator locks (a server's acceptor) can hang the child under
/// the sanitizers' allocators.
class gated_child {
public:
  explicit gated_child(std::function<int()> fn)
      : child_([this, fn = std::move(fn)] { return go_.wait(std::chrono::seconds(60)) ? fn() : 97; }) {}
  void start() { go_.notify(); }
  int wait() { return child_.wait(); }
  void kill(int sig) { child_.kill(sig); }
  int pid() const { return child_.pid(); }

private:
  signal_pipe go_; // declared first: the child uses it
  child child_;
};

/// Resident memory of a process (this one by default), KiB; -1 if unknown.
long rss_kib(int pid = 0);
/// rss_kib() once it has stopped changing for 100 ms (at most 5 s): what a
/// process holds after its allocations for what just happened are done.
long settled_rss_kib(int pid = 0);

/// Raise this process's RLIMIT_NOFILE to `want` if the hard limit allows;
/// false if it cannot.
bool raise_fd_limit(unsigned long want);

#endif // _WIN32

/// True when this Windows build runs under Wine (some Win32 behaviour differs).
bool under_wine();
/// This process's id.
std::int64_t self_pid();
/// Open descriptors of this process: /proc/self/fd on Linux, the handle
/// count (GetProcessHandleCount) on Windows.
int open_fds();
/// Threads of this process.
int thread_count();

/// The calling thread's id, for thread_waits() (Linux: its tid).
std::int64_t this_thread_id();
/// True when thread `id` of this process is waiting in a blocking call, so
/// a test can act once a reader, writer, waiter or flush is really blocked.
/// Linux: it sleeps in the kernel (state S or D in /proc/self/task/ID/stat).
/// Windows (no such reading): it has used no CPU time for 20 ms, which a
/// thread ready to run but not yet scheduled also shows.
bool thread_waits(std::int64_t id);
/// Waits (up to `limit`) until the thread whose id a test stored in `id`
/// (0 until it has) waits in a blocking call; false if it never does.
bool wait_until_waiting(const std::atomic<std::int64_t>& id,
                        std::chrono::milliseconds limit = std::chrono::seconds(20));

/// Run a program (a bare name is looked up in PATH), optionally with input,
/// collecting its output; killed when `limit` passes. Linux and Windows.
struct run_result {
  int exit_code = -1;
  std::string out, err;
};
run_result run(const std::vector<std::string>& argv, const std::string& input = {},
               std::chrono::milliseconds limit = std::chrono::seconds(30));

/// A program running in the background (Linux and Windows), for rows whose
/// peer is another process that may be killed. Its output goes to this
/// process's stderr (Linux) or nowhere (Windows). The destructor kills it.
class process {
public:
  explicit process(const std::vector<std::string>& argv);
  ~process();
  process(const process&) = delete;
  process& operator=(const process&) = delete;
  std::int64_t pid() const noexcept { return pid_; }
  /// Kill at once (SIGKILL, TerminateProcess): no cleanup runs in the child.
  void kill();
  /// Wait for it to exit (killing it when `limit` passes); its exit code,
  /// 128+signal on Linux.
  int wait(std::chrono::milliseconds limit = std::chrono::seconds(30));

private:
  std::int64_t pid_ = -1;
  void* handle_ = nullptr; // Windows: the process handle
  int status_ = -1;
  bool reaped_ = false;
};

/// A completion handler that hands (error_code, values...) to a future, so
/// errors arrive as values: TSan cannot see libstdc++'s exception_ptr
/// reference counts, so exceptions crossing threads (use_future) look racy.
/// Returns {handler, future}.
template <class... A>
auto outcome() {
  auto p = std::make_shared<std::promise<std::tuple<async_error_code, A...>>>();
  auto f = p->get_future();
  auto h = [p](async_error_code ec, A... a) { p->set_value({ec, std::move(a)...}); };
  return std::make_pair(std::move(h), std::move(f));
}

/// `n` calls of `one` (which returns an error and says whether its answer
/// was right), timed: the latencies sorted (ms), and the failures.
struct timed_calls {
  std::vector<double> ms;
  int failures = 0;
  std::string first_failure;
  double p50() const { return ms[ms.size() / 2]; }
  double p99() const { return ms[ms.size() * 99 / 100 - (ms.size() >= 100 ? 1 : 0)]; }
  double max() const { return ms.back(); }
};
timed_calls time_calls(int n, const std::function<bool(std::error_code&)>& one);

/// How many calls the latency rows time: fewer under the sanitizers, which
/// make each call ten times slower (200 took TSan a minute and a half, and
/// these rows run alone). The bounds stay: the p99 of 25 calls is their
/// slowest one; the default build times 200.
#ifdef NPIPE_TEST_SANITIZERS
inline constexpr int latency_calls = 25;
#else
inline constexpr int latency_calls = 200;
#endif

/// Poll `pred` (every millisecond) until it holds or `limit` passes; its
/// last answer. For conditions no event reports, in place of a guessed sleep.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(20));

inline std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s)); }
inline std::string text(const std::vector<std::byte>& v) { return {reinterpret_cast<const char*>(v.data()), v.size()}; }

} // namespace npipe::test
