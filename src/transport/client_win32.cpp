// SPDX-License-Identifier: MIT
// Windows local pipes, the client side: opening an instance (CreateFileW,
// the pipe's type and read mode; open_client, which the async connect in
// runtime/async_connect_win32.cpp shares) and connect_local, which waits for a
// busy pipe (WaitNamedPipe) and retries within the caller's deadline.

#include "core/pipe_rules.hpp"
#include "transport/win32_util.hpp"

#include <algorithm>
#include <utility>

namespace npipe::detail {

open_status open_client(const std::wstring& path, const pipe_name& name, const client_options& opts,
                        client_handle& out, DWORD& err, std::error_code& ec) {
  ec.clear();
  err = 0;
  HANDLE h = ::CreateFileW(path.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, OPEN_EXISTING,
                           FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, nullptr);
  if (h == INVALID_HANDLE_VALUE) {
    err = ::GetLastError();
    if (err == ERROR_PIPE_BUSY) return open_status::busy;
    if (err == ERROR_FILE_NOT_FOUND) return open_status::missing;
    ec = win32_error(err);
    return open_status::failed;
  }
  // The server may disconnect the instance the moment it is connected: then
  // the client is connected to a closed pipe, as on Linux, and its first
  // call says broken_pipe (the calls below fail with ERROR_PIPE_NOT_CONNECTED).
  auto gone = [](DWORD e) { return e == ERROR_PIPE_NOT_CONNECTED || e == ERROR_BROKEN_PIPE || e == ERROR_NO_DATA; };
  DWORD flags = 0;
  bool known = ::GetNamedPipeInfo(h, &flags, nullptr, nullptr, nullptr);
  if (!known && !gone(::GetLastError())) {
    err = ::GetLastError();
    ec = win32_error(err);
    ::CloseHandle(h);
    return open_status::failed;
  }
  pipe_type type = !known || (flags & PIPE_TYPE_MESSAGE) ? pipe_type::message : pipe_type::byte;
  read_mode mode = pipe_rules::initial_read_mode(type, opts.read_mode);
  if (!pipe_rules::read_mode_allowed(type, mode)) {
    ::CloseHandle(h);
    set_error_detail("message read mode needs a message pipe; " + name.str() + " is a byte pipe");
    ec = make_error_code(errc::invalid_argument);
    return open_status::failed;
  }
  DWORD m = mode == read_mode::message ? PIPE_READMODE_MESSAGE : PIPE_READMODE_BYTE;
  if (known && !::SetNamedPipeHandleState(h, &m, nullptr, nullptr) && !gone(::GetLastError())) {
    err = ::GetLastError();
    ec = win32_error(err);
    ::CloseHandle(h);
    return open_status::failed;
  }
  out = client_handle{h, type, mode, server_of(h)};
  return open_status::opened;
}

std::unique_ptr<connection_impl> connect_local(const pipe_name& name, const client_options& opts, deadline dl,
                                               std::error_code& ec, std::span<const std::byte> first) {
  if (opts.require_server_uid) {
    set_error_detail("require_server_uid names a POSIX uid; on Windows the pipe's DACL protects the name");
    ec = make_error_code(errc::not_supported);
    return nullptr;
  }
  std::wstring path = wide_path(name);
  client_handle c;
  bool waited = false;
  for (;;) {
    DWORD e = 0;
    auto st = open_client(path, name, opts, c, e, ec);
    if (st == open_status::opened) break;
    if (st == open_status::failed) return nullptr;
    if (st == open_status::missing) {
      if (waited && !dl.passed()) { // it was there: between instances
        ::Sleep(std::min<DWORD>(10, wait_ms(dl)));
        continue;
      }
      set_error_detail("no server is listening on " + name.str());
      ec = win32_error(e);
      return nullptr;
    }
    // Busy: WaitNamedPipe, within the caller's deadline.
    DWORD ms = wait_ms(dl);
    if (ms == 0) {
      set_error_detail(waited ? "no instance of " + name.str() + " became free in time"
                              : "all instances of " + name.str() + " are busy");
      ec = make_error_code(waited ? errc::timed_out : errc::pipe_busy, static_cast<int>(e));
      return nullptr;
    }
    waited = true;
    if (!::WaitNamedPipeW(path.c_str(), ms == INFINITE ? NMPWAIT_WAIT_FOREVER : ms)) {
      DWORD we = ::GetLastError();
      if (we == ERROR_SEM_TIMEOUT || dl.passed()) {
        set_error_detail("no instance of " + name.str() + " became free in time");
        ec = make_error_code(errc::timed_out, static_cast<int>(we));
        return nullptr;
      }
      if (we == ERROR_ACCESS_DENIED) {
        ec = win32_error(we);
        return nullptr;
      }
      // The server is between instances: try again shortly, within the deadline.
      ::Sleep(std::min<DWORD>(10, wait_ms(dl)));
    }
  }
  auto conn = make_pipe_end(c.h, false, c.type, c.mode, name, opts.max_message_size,
                                                 std::move(c.server), nullptr);
  if (!first.empty()) {
    conn->write(first, dl, ec);
    if (ec) return nullptr;
  }
  return conn;
}

} // namespace npipe::detail
