// SPDX-License-Identifier: MIT
// Test helpers that work on every system.
#include "test_support.hpp"

#include <algorithm>

#include <cstdio>
#include <random>
#include <thread>
#ifdef _WIN32
#include <windows.h>
#include <process.h>
#define NPIPE_GETPID _getpid
#else
#include <unistd.h>
#define NPIPE_GETPID ::getpid
#endif

namespace npipe::test {

bool under_wine() {
#ifdef _WIN32
  HMODULE ntdll = ::GetModuleHandleW(L"ntdll.dll");
  return ntdll && ::GetProcAddress(ntdll, "wine_get_version") != nullptr;
#else
  return false;
#endif
}

std::int64_t self_pid() { return static_cast<std::int64_t>(NPIPE_GETPID()); }

std::string random_name(std::string_view prefix) {
  static std::mt19937_64 rng{std::random_device{}()};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return "npipe-test-" + std::string(prefix) + "-" + std::to_string(NPIPE_GETPID()) + "-" + buf;
}

// Not instrumented by the sanitizers, and a plain pointer loop: the
// sanitizer presets build without optimisation, where instrumenting each
// byte's store made 64 MiB take 5 to 17 s under TSan, long enough to eat a
// test's deadline before npipe was even called. Writing a buffer this
// function just allocated checks nothing worth checking.
#if defined(__GNUC__)
__attribute__((no_sanitize("address", "thread", "undefined")))
#endif
std::vector<std::byte>
pattern(std::size_t n, std::uint32_t seed) {
  std::vector<std::byte> v(n);
  std::byte* p = v.data();
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p[i] = static_cast<std::byte>(x);
  }
  return v;
}

void expect_echo_keeps_boundaries(connection& c, std::initializer_list<std::size_t> sizes, timeout each) {
  for (std::size_t n : sizes) {
    auto a = pattern(n, 1), b = pattern(1, 2), d = pattern(n, 3);
    std::thread writer([&] {
      c.write(a);
      c.write(b);
      c.write(d);
    });
    EXPECT_EQ(c.receive(each), a) << n;
    EXPECT_EQ(c.receive(each), b) << n;
    EXPECT_EQ(c.receive(each), d) << n;
    writer.join();
  }
}

timed_calls time_calls(int n, const std::function<bool(std::error_code&)>& one) {
  timed_calls r;
  for (int i = 0; i < n; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    std::error_code ec;
    bool right = one(ec);
    r.ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if ((ec || !right) && !r.failures++)
      r.first_failure = ec ? ec.message() + " (" + last_error_detail() + ")" : std::string("a wrong answer");
  }
  std::sort(r.ms.begin(), r.ms.end());
  return r;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= until) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(1)); // polling: the condition has no event to wait on
  }
}

bool wait_until_waiting(const std::atomic<std::int64_t>& id, std::chrono::milliseconds limit) {
  return wait_until([&] { return id.load() != 0 && thread_waits(id.load()); }, limit);
}

} // namespace npipe::test
