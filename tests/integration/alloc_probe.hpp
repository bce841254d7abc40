// SPDX-License-Identifier: MIT
#pragma once
// Records the largest single allocation made by this process while a probe
// is alive (global operator new is replaced in alloc_probe.cpp).

#include <cstddef>

namespace npipe::test {

class alloc_probe {
public:
  alloc_probe();
  ~alloc_probe();
  std::size_t largest() const;
};

} // namespace npipe::test
