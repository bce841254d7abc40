// SPDX-License-Identifier: MIT
#include "transport/transport.hpp"

#ifdef _WIN32
#include <windows.h>
#endif

#include <algorithm>
#include <climits>
#include <cstdint>

namespace npipe {

namespace {
#ifdef _WIN32
// Not a thread_local std::string: mingw-w64 may free a thread_local's
// storage before running its destructor at thread exit (GCC bug 80816,
// mingw-w64 bug 527), which crashed threads that had used npipe. A
// fiber-local slot's callback frees the string at thread exit instead.
void WINAPI free_detail(void* p) { delete static_cast<std::string*>(p); }

std::string& error_detail() {
  static const DWORD slot = ::FlsAlloc(free_detail);
  auto* s = static_cast<std::string*>(::FlsGetValue(slot));
  if (!s) {
    s = new std::string;
    ::FlsSetValue(slot, s);
  }
  return *s;
}
#else
std::string& error_detail() {
  thread_local std::string detail;
  return detail;
}
#endif
} // namespace

std::string last_error_detail() { return error_detail(); }

namespace detail {

void set_error_detail(std::string detail) { error_detail() = std::move(detail); }
void clear_error_detail() { error_detail().clear(); }

void throw_error(const std::error_code& ec, const std::string& what) {
  std::string msg = "npipe: " + what;
  if (!error_detail().empty()) msg += " (" + error_detail() + ")";
  throw std::system_error(ec, msg);
}

bool check_server_options(const server_options& o, std::error_code& ec) {
  if (o.max_instances < 1 || o.max_instances > unlimited_instances || o.max_connections < 1 ||
      o.max_message_size < pipelined_request_max || o.max_message_size > UINT32_MAX || o.max_in_flight < 1) {
    set_error_detail("max_instances must be 1..255, max_connections and max_in_flight at least 1, and "
                     "max_message_size 4096..4294967295");
    ec = make_error_code(errc::invalid_argument);
    return false;
  }
  if (o.read_mode == read_mode::message && o.type == pipe_type::byte) {
    set_error_detail("message read mode needs a message pipe");
    ec = make_error_code(errc::invalid_argument);
    return false;
  }
  return true;
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
