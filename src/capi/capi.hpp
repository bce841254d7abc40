// SPDX-License-Identifier: MIT
#pragma once
// What the C interface's files share: the handles (each owns its C++ object)
// and the helpers that fill the caller's npipe_error from an error code and
// this thread's last_error_detail(), catch what the C++ side may throw, and
// copy results out.

#include <npipe/npipe.h>
#include <npipe/npipe.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <system_error>
#include <vector>

struct npipe_server_options {
  npipe::server_options o;
};
struct npipe_client_options {
  npipe::client_options o;
};
struct npipe_server {
  npipe::server s;
};
struct npipe_connection {
  npipe::connection c;
};

namespace npipe::capi {

static_assert(NPIPE_SYSTEM_ERROR == static_cast<int>(npipe::errc::system_error), "npipe_status mirrors npipe::errc");
static_assert(NPIPE_UNSAFE_DIRECTORY == static_cast<int>(npipe::errc::unsafe_directory));
static_assert(NPIPE_TYPE_MESSAGE == static_cast<int>(npipe::pipe_type::message));
static_assert(NPIPE_READ_MESSAGE == static_cast<int>(npipe::read_mode::message));

inline void copy_text(char* out, std::size_t size, const std::string& text) {
  std::size_t n = std::min(text.size(), size - 1);
  std::memcpy(out, text.data(), n);
  out[n] = '\0';
}

inline npipe_status fill(npipe_error* err, npipe_status st, int os, const std::string& message) {
  if (err) {
    err->status = st;
    err->os_code = os;
    copy_text(err->message, sizeof err->message, message);
  }
  return st;
}

inline npipe_status ok(npipe_error* err) { return fill(err, NPIPE_OK, 0, {}); }

// What a failed C++ call says, in the caller's npipe_error.
inline npipe_status fail(npipe_error* err, const std::error_code& ec) {
  auto st = static_cast<npipe_status>(npipe::condition_of(ec));
  std::string message = ec.message();
  if (auto detail = npipe::last_error_detail(); !detail.empty()) message += ": " + detail;
  return fill(err, st, npipe::os_error(ec), message);
}

inline npipe_status invalid(npipe_error* err, const char* what) { return fill(err, NPIPE_INVALID_ARGUMENT, 0, what); }

inline npipe_status out_of_memory(npipe_error* err) {
  return fill(err, NPIPE_SYSTEM_ERROR, 0, "out of memory: the call could not allocate what it needed");
}

inline npipe::timeout ms(int64_t t) { return t < 0 ? npipe::forever : npipe::timeout(t); }

// Runs `f` (which returns an npipe_status) with C++ exceptions turned into statuses.
template <class F>
inline npipe_status guarded(npipe_error* err, F&& f) noexcept {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return out_of_memory(err);
  } catch (const std::system_error& e) {
    return fail(err, e.code());
  } catch (const std::exception& e) {
    return fill(err, NPIPE_SYSTEM_ERROR, 0, e.what());
  }
}

inline bool parse_name(const char* text, npipe::pipe_name& out, npipe_error* err, npipe_status& st) {
  if (!text) {
    st = invalid(err, "the pipe name is NULL");
    return false;
  }
  std::error_code ec;
  out = npipe::pipe_name::parse(text, ec);
  if (ec) st = fail(err, ec);
  return !ec;
}

inline std::span<const std::byte> bytes(const void* p, std::size_t n) { return {static_cast<const std::byte*>(p), n}; }

// A whole reply or message into the caller's buffer: NPIPE_MORE_DATA when it does not fit.
inline npipe_status deliver(const std::vector<std::byte>& v, void* buf, std::size_t capacity, std::size_t* size,
                     npipe_error* err) {
  std::size_t n = std::min(v.size(), capacity);
  if (n) std::memcpy(buf, v.data(), n);
  if (size) *size = v.size();
  if (v.size() > capacity)
    return fill(err, NPIPE_MORE_DATA, 0,
                "the reply is " + std::to_string(v.size()) + " bytes, the buffer " + std::to_string(capacity) +
                    "; the first " + std::to_string(capacity) + " are in it (use the _alloc call for all of it)");
  return ok(err);
}

// A whole message in a malloc'ed buffer (NULL when empty).
inline npipe_status deliver_alloc(const std::vector<std::byte>& v, void** out, std::size_t* size, npipe_error* err) {
  *out = nullptr;
  if (size) *size = v.size();
  if (v.empty()) return ok(err);
  void* p = std::malloc(v.size());
  if (!p) return out_of_memory(err);
  std::memcpy(p, v.data(), v.size());
  *out = p;
  return ok(err);
}

// Changes an options object (its C++ options `o->o`); checks are made where they are used.
template <class Options, class F>
inline npipe_status set(Options* o, npipe_error* err, F&& f) noexcept {
  if (!o) return invalid(err, "the options handle is NULL");
  return guarded(err, [&] {
    f(o->o);
    return ok(err);
  });
}

// A native_handle_type as the C ABI's intptr_t.
inline std::intptr_t native_int(npipe::native_handle_type h) noexcept {
#ifdef _WIN32
  return reinterpret_cast<std::intptr_t>(h);
#else
  return h;
#endif
}

template <class T>
inline bool non_null(const T* p, const char* what, npipe_error* err, npipe_status& st) {
  if (p) return true;
  st = invalid(err, what);
  return false;
}

} // namespace npipe::capi
