// SPDX-License-Identifier: MIT
// Test helpers for Windows: the watchdog is a thread (no SIGALRM there).
#include "test_support.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace npipe::test {
namespace {
std::atomic<unsigned> generation{0};
}

void watchdog(unsigned seconds) {
  unsigned mine = ++generation;
  if (seconds == 0) return;
  std::thread([mine, seconds] {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < until) {
      if (generation.load() != mine) return; // re-armed or disarmed
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (generation.load() != mine) return;
    std::fputs("\n*** watchdog: test hung; killed ***\n", stderr);
    std::fflush(stderr);
    std::_Exit(124);
  }).detach();
}

void local_test::SetUp() { watchdog(60); }
void local_test::TearDown() { watchdog(0); }

} // namespace npipe::test
