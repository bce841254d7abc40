// SPDX-License-Identifier: MIT
// Test helpers for Linux: child processes, signal pipes, a private pipe
// directory per test, /proc readings.
#include "test_support.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <poll.h>
#include <random>
#include <thread>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace npipe::test {

namespace {
// Children to kill when the watchdog fires, so none outlives a hung test
// (and holds CTest's output pipe open).
std::atomic<pid_t> children[64];

void track(pid_t pid) {
  for (auto& c : children) {
    pid_t none = 0;
    if (c.compare_exchange_strong(none, pid)) return;
  }
}
void untrack(pid_t pid) {
  for (auto& c : children) {
    pid_t p = pid;
    c.compare_exchange_strong(p, 0);
  }
}

void on_alarm(int) {
  const char msg[] = "\n*** watchdog: test hung; killed ***\n";
  [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
  for (auto& c : children)
    if (pid_t p = c.load(); p > 0) ::kill(p, SIGKILL);
  ::_exit(124);
}
} // namespace

void watchdog(unsigned seconds) {
  std::signal(SIGALRM, on_alarm);
  ::alarm(seconds);
}

void local_test::SetUp() {
  watchdog(60);
  char tmpl[] = "/tmp/npipe-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  dir_ = tmpl;
  ::chmod(dir_.c_str(), 0755);
  ::setenv("NPIPE_DIR", dir_.c_str(), 1);
}

void local_test::TearDown() {
  ::unsetenv("NPIPE_DIR");
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  ::alarm(0);
}

signal_pipe::signal_pipe() {
  if (::pipe2(fds_, O_CLOEXEC) != 0) std::abort();
}
signal_pipe::~signal_pipe() {
  ::close(fds_[0]);
  ::close(fds_[1]);
}
void signal_pipe::notify() {
  char c = 1;
  [[maybe_unused]] auto n = ::write(fds_[1], &c, 1);
}
bool signal_pipe::wait(std::chrono::milliseconds t) {
  pollfd p{fds_[0], POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(t.count())) != 1) return false;
  char c;
  return ::read(fds_[0], &c, 1) == 1;
}

child::child(std::function<int()> fn) {
  std::fflush(nullptr);
  // A child's watchdog gives it as long as its test has left (a fork does
  // not inherit the alarm): a server child must not die while the test it
  // serves is still within its own limit.
  unsigned left = ::alarm(0);
  ::alarm(left);
  pid_ = ::fork();
  if (pid_ == 0) {
    watchdog(left ? left : 60);
    int rc = 0;
    try {
      rc = fn();
      if (::testing::Test::HasFailure()) rc = rc ? rc : 99;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: exception: %s\n", e.what());
      rc = 98;
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  track(pid_);
}

child::~child() {
  if (pid_ > 0 && status_ < 0) {
    ::kill(pid_, SIGKILL);
    wait();
  }
}

int child::wait() {
  if (status_ >= 0) return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  status_ = st;
  untrack(pid_);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void child::kill(int sig) { ::kill(pid_, sig); }

run_result run(const std::vector<std::string>& argv, const std::string& input, std::chrono::milliseconds limit) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC)) std::abort();
  std::vector<char*> args; // built before fork: the child must not allocate
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::execvp(args[0], args.data()); // a bare name is looked up in PATH
    ::_exit(127);
  }
  track(pid);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (!input.empty()) [[maybe_unused]] auto n = ::write(in[1], input.data(), input.size());
  ::close(in[1]);
  run_result r;
  auto until = std::chrono::steady_clock::now() + limit;
  pollfd p[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open = 2;
  while (open > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0 || ::poll(p, 2, static_cast<int>(left.count())) <= 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (!p[i].revents) continue;
      char buf[4096];
      ssize_t n = ::read(p[i].fd, buf, sizeof buf);
      if (n <= 0) {
        p[i].fd = -1;
        --open;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(out[0]);
  ::close(err[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  untrack(pid);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

process::process(const std::vector<std::string>& argv) {
  std::vector<char*> args; // built before fork: the child must not allocate
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(2, 1); // its output goes with the test's diagnostics
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  if (pid > 0) track(pid);
  pid_ = pid;
}

process::~process() {
  kill();
  wait();
}

void process::kill() {
  if (pid_ > 0 && !reaped_) ::kill(static_cast<pid_t>(pid_), SIGKILL);
}

int process::wait(std::chrono::milliseconds limit) {
  if (pid_ <= 0 || reaped_) return status_;
  auto until = std::chrono::steady_clock::now() + limit;
  int st = 0;
  for (;;) {
    pid_t r = ::waitpid(static_cast<pid_t>(pid_), &st, WNOHANG);
    if (r == static_cast<pid_t>(pid_)) break;
    if (r < 0) return status_;
    if (std::chrono::steady_clock::now() >= until) ::kill(static_cast<pid_t>(pid_), SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(5)); // polling the exit against a deadline
  }
  untrack(static_cast<pid_t>(pid_));
  reaped_ = true;
  status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return status_;
}

int open_fds() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d)) ++n;
    ::closedir(d);
  }
  return n;
}

bool raise_fd_limit(unsigned long want) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return false;
  if (r.rlim_cur >= want) return true;
  r.rlim_cur = std::min<rlim_t>(want, r.rlim_max);
  return ::setrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur >= want;
}

long settled_rss_kib(int pid) {
  long last = rss_kib(pid);
  auto changed = std::chrono::steady_clock::now();
  wait_until(
      [&] {
        long now = rss_kib(pid);
        if (now != last) {
          last = now;
          changed = std::chrono::steady_clock::now();
        }
        return std::chrono::steady_clock::now() - changed >= std::chrono::milliseconds(100);
      },
      std::chrono::seconds(5));
  return last;
}

long rss_kib(int pid) {
  std::ifstream in(pid ? "/proc/" + std::to_string(pid) + "/status" : std::string("/proc/self/status"));
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long v = -1;
      in >> v;
      return v;
    }
    in.ignore(1 << 12, '\n');
  }
  return -1;
}

int thread_count() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n;
}

std::int64_t this_thread_id() { return static_cast<std::int64_t>(::syscall(SYS_gettid)); }

bool thread_waits(std::int64_t id) {
  std::ifstream in("/proc/self/task/" + std::to_string(id) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto end_of_name = stat.rfind(')'); // "tid (name) S ...": the name may hold spaces and parentheses
  if (end_of_name == std::string::npos || end_of_name + 2 >= stat.size()) return false;
  char state = stat[end_of_name + 2];
  return state == 'S' || state == 'D';
}

} // namespace npipe::test
