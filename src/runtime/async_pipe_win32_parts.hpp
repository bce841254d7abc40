// SPDX-License-Identifier: MIT
#pragma once
// Windows async pipe: what its three files share (async_pipe_win32.cpp: the
// end's life, sending and closing; async_connect_win32.cpp: adopting and
// connecting; async_receive_win32.cpp: receiving) -- the sizes it works
// with, starting an overlapped call, its operation and its connect state.
// Asio first: it includes <winsock2.h> before <windows.h>.
#include "runtime/async_pipe.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(bind_executor.hpp)
#include NPIPE_NET_HEADER(steady_timer.hpp)
#include NPIPE_NET_HEADER(windows/overlapped_ptr.hpp)

#include <chrono>
#include <memory>
#include <string>

namespace npipe::detail {
namespace async_win32 {
inline constexpr std::size_t first_read = 4096;        // a receive's first read when no message is waiting yet
inline constexpr std::size_t byte_receive = 64u << 10; // byte read mode: most a receive returns
inline constexpr std::size_t byte_chunk = 1u << 30;    // byte pipes: largest single WriteFile
inline constexpr std::size_t max_write = 0xFFFFFFFFu;  // one WriteFile, so one message, at most

inline std::error_code err(errc e) { return make_error_code(e); }

inline DWORD win32_code(const std::error_code& ec) {
  if (!ec) return 0;
  if (ec == net::error::operation_aborted) return ERROR_OPERATION_ABORTED;
  return static_cast<DWORD>(ec.value());
}

inline bool peer_gone(DWORD e) {
  return e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED || e == ERROR_NO_DATA || e == ERROR_HANDLE_EOF;
}

// Starts one overlapped call on the completion port; `handler(ec, n)` runs
// on `strand` when it completes. Returns its OVERLAPPED (for CancelIoEx), or
// nullptr if it failed at once (the handler still runs, with the error).
template <class Call, class Handler>
OVERLAPPED* start_overlapped(net::strand<net::any_io_executor>& strand, Call call, Handler handler) {
  net::windows::overlapped_ptr ov(strand, net::bind_executor(strand, std::move(handler)));
  BOOL ok = call(ov.get());
  DWORD e = ::GetLastError();
  // ERROR_MORE_DATA at once still queues a completion (as ERROR_IO_PENDING does).
  if (!ok && e != ERROR_IO_PENDING && e != ERROR_MORE_DATA) {
    ov.complete(std::error_code(static_cast<int>(e), net::error::get_system_category()), 0);
    return nullptr;
  }
  return ov.release();
}

} // namespace async_win32

struct async_pipe_op : async_op {
  std::size_t written = 0; // a send: how much of it the pipe has taken
  bool is_flush = false;
};

struct async_pipe::connecting {
  pipe_name name;
  client_options opts;
  deadline dl;
  std::unique_ptr<op> o;
  std::wstring path;
  bool waited = false;
  std::chrono::milliseconds backoff{1};
  net::steady_timer timer;
  explicit connecting(const net::any_io_executor& ex) : timer(ex) {}
};

} // namespace npipe::detail
