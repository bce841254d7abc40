// SPDX-License-Identifier: MIT
#include "alloc_probe.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<bool> armed{false};
std::atomic<std::size_t> largest_seen{0};

void* allocate(std::size_t n) {
  if (armed.load(std::memory_order_relaxed)) {
    auto prev = largest_seen.load(std::memory_order_relaxed);
    while (n > prev && !largest_seen.compare_exchange_weak(prev, n)) {
    }
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
} // namespace

void* operator new(std::size_t n) { return allocate(n); }
void* operator new[](std::size_t n) { return allocate(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace npipe::test {
alloc_probe::alloc_probe() {
  largest_seen = 0;
  armed = true;
}
alloc_probe::~alloc_probe() { armed = false; }
std::size_t alloc_probe::largest() const { return largest_seen.load(); }
} // namespace npipe::test
