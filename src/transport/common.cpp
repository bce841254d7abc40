// SPDX-License-Identifier: MIT
#include "transport/transport.hpp"

#include "core/framing.hpp"
#include "core/pipe_rules.hpp"

#ifdef _WIN32
#include <windows.h>
#endif

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <string>

namespace npipe {

namespace {
#ifdef _WIN32
// Not a thread_local std::string: mingw-w64 may free a thread_local's
// storage before running its destructor at thread exit (GCC bug 80816,
// mingw-w64 bug 527), which crashed threads that had used npipe. A
// fiber-local slot's callback frees the string at thread exit instead.
void WINAPI free_detail(void* p) { delete static_cast<std::string*>(p); }

DWORD detail_slot() {
  static const DWORD slot = ::FlsAlloc(free_detail);
  return slot;
}

// This thread's detail, or nullptr if it never had one.
std::string* existing_detail() noexcept { return static_cast<std::string*>(::FlsGetValue(detail_slot())); }

std::string& error_detail() {
  auto* s = existing_detail();
  if (!s) {
    s = new std::string;
    ::FlsSetValue(detail_slot(), s);
  }
  return *s;
}
#else
std::string& error_detail() {
  thread_local std::string detail;
  return detail;
}
std::string* existing_detail() noexcept { return &error_detail(); }
#endif
} // namespace

std::string last_error_detail() {
  auto* s = existing_detail();
  return s ? *s : std::string();
}

namespace detail {

void set_error_detail(std::string detail) { error_detail() = std::move(detail); }
// Never allocates: every public call clears on entry, noexcept ones too.
void clear_error_detail() noexcept {
  if (auto* s = existing_detail()) s->clear();
}

void throw_error(const std::error_code& ec, const std::string& what) {
  std::string msg = "npipe: " + what;
  if (auto* d = existing_detail(); d && !d->empty()) msg += " (" + *d + ")";
  throw std::system_error(ec, msg);
}

std::error_code no_memory_error() noexcept {
#ifdef _WIN32
  return make_error_code(errc::system_error, ERROR_NOT_ENOUGH_MEMORY);
#else
  return make_error_code(errc::system_error, ENOMEM);
#endif
}

bool option_out_of_range(const char* field, long long value, const std::string& allowed, std::error_code& ec) {
  set_error_detail(std::string(field) + " is " + std::to_string(value) + "; allowed: " + allowed);
  ec = make_error_code(errc::invalid_argument);
  return false;
}

namespace {
bool out_of_range(const char* field, long long value, const std::string& allowed, std::error_code& ec) {
  return option_out_of_range(field, value, allowed, ec);
}
const std::string limit_range =
    std::to_string(framing::min_receive_limit) + ".." + std::to_string(framing::max_receive_limit);
} // namespace

bool check_server_options(const server_options& o, std::error_code& ec) {
  ec.clear();
  if (o.max_instances < 1 || o.max_instances > unlimited_instances)
    return out_of_range("server_options::max_instances", o.max_instances, "1..255 (255: unlimited)", ec);
  if (o.max_connections < 1) return out_of_range("server_options::max_connections", o.max_connections, "1 or more", ec);
  if (o.max_message_size < framing::min_receive_limit || o.max_message_size > framing::max_receive_limit)
    return out_of_range("server_options::max_message_size", static_cast<long long>(o.max_message_size), limit_range,
                        ec);
  if (o.max_pending < 1) return out_of_range("server_options::max_pending", o.max_pending, "1 or more", ec);
  if (o.handshake_timeout == timeout::zero() || (o.handshake_timeout < timeout::zero() && o.handshake_timeout != forever))
    return out_of_range("server_options::handshake_timeout (ms)", o.handshake_timeout.count(),
                        "more than 0, or forever", ec);
  if (o.read_mode && !pipe_rules::read_mode_allowed(o.type, *o.read_mode)) {
    set_error_detail("server_options::read_mode is message, but type is byte: message read mode needs a message pipe");
    ec = make_error_code(errc::invalid_argument);
    return false;
  }
  return true;
}

bool check_server_open(bool already_open, const pipe_name& name, std::error_code& ec) {
  ec.clear();
  if (already_open) {
    set_error_detail("this server is already open");
    ec = make_error_code(errc::invalid_state);
  } else if (name.empty()) {
    set_error_detail("the pipe name is empty (a default-constructed pipe_name)");
    ec = make_error_code(errc::invalid_name);
  } else if (!name.is_local()) {
    set_error_detail("a server creates a local name (\\\\.\\pipe\\NAME), not " + name.str() +
                     ": remote clients reach a local pipe through a gateway on its machine");
    ec = make_error_code(errc::invalid_name);
  }
  return !ec;
}

bool check_async_server_options(const async_server_options& o, std::error_code& ec) {
  if (!check_server_options(o, ec)) return false;
  if (o.max_in_flight < 1)
    return out_of_range("async_server_options::max_in_flight", o.max_in_flight, "1 or more", ec);
  if (o.max_queued_bytes < 1)
    return out_of_range("async_server_options::max_queued_bytes", static_cast<long long>(o.max_queued_bytes),
                        "1 or more", ec);
  if (o.idle_timeout == timeout::zero() || (o.idle_timeout < timeout::zero() && o.idle_timeout != forever))
    return out_of_range("async_server_options::idle_timeout (ms)", o.idle_timeout.count(), "more than 0, or forever",
                        ec);
  return true;
}

bool check_client_options(const client_options& o, std::error_code& ec) {
  ec.clear();
  if (o.max_message_size < framing::min_receive_limit || o.max_message_size > framing::max_receive_limit)
    return out_of_range("client_options::max_message_size", static_cast<long long>(o.max_message_size), limit_range,
                        ec);
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
