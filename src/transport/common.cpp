// SPDX-License-Identifier: MIT
#include "transport/transport.hpp"

#include <algorithm>
#include <climits>

namespace npipe {

namespace {
thread_local std::string error_detail;
}

std::string last_error_detail() { return error_detail; }

namespace detail {

void set_error_detail(std::string detail) { error_detail = std::move(detail); }
void clear_error_detail() { error_detail.clear(); }

void throw_error(const std::error_code& ec, const std::string& what) {
  std::string msg = "npipe: " + what;
  if (!error_detail.empty()) msg += " (" + error_detail + ")";
  throw std::system_error(ec, msg);
}

int deadline::poll_ms() const noexcept {
  if (never()) return -1;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(at - clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
}

timeout deadline::remaining() const noexcept {
  if (never()) return forever;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(at - clock::now());
  return std::max(left, timeout::zero());
}

} // namespace detail
} // namespace npipe
