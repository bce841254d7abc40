// SPDX-License-Identifier: MIT
#pragma once
// Win32 helpers shared by the blocking pipes (local_win32.cpp) and the
// async runtime on IOCP (runtime/async_pipe_win32.cpp).

#include <windows.h>

#include "transport/transport.hpp"

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

namespace npipe::detail {

std::wstring widen(const std::string& s);
std::string narrow(const wchar_t* w);
/// \\.\pipe\NAME for a local name.
std::wstring wide_path(const pipe_name& name);

/// A Win32 error as an npipe error condition, keeping the Win32 code.
std::error_code win32_error(DWORD e);

/// Milliseconds left until `dl`, as Win32 waits take them.
DWORD wait_ms(deadline dl);

/// The client of a server-side handle: process id and (the client opened
/// with SECURITY_IDENTIFICATION) account name and SID.
peer_identity client_of(HANDLE h);
/// The server of a client-side handle: process id and, when its process
/// token can be read, account name and SID.
peer_identity server_of(HANDLE h);

/// One CreateFile on a pipe name, as a client: what happened.
enum class open_status { opened, busy, missing, failed };
struct client_handle {
  HANDLE h = INVALID_HANDLE_VALUE;
  pipe_type type = pipe_type::message;
  npipe::read_mode mode = npipe::read_mode::message;
  peer_identity server;
};
/// Opens `path` (overlapped, SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION)
/// and sets the read mode from `opts`. busy and missing leave `ec` empty and
/// `err` set (the caller decides whether to wait); failed sets `ec`.
open_status open_client(const std::wstring& path, const pipe_name& name, const client_options& opts,
                        client_handle& out, DWORD& err, std::error_code& ec);

/// FlushFileBuffers on a helper thread: it has no overlapped form. The flush
/// can be cancelled (CancelSynchronousIo) and the helper joined at any time.
class background_flush {
public:
  background_flush() = default;
  background_flush(const background_flush&) = delete;
  background_flush& operator=(const background_flush&) = delete;
  ~background_flush() { stop(); }

  /// Start flushing `h`; `done(error)` runs on the helper thread when the
  /// flush ends (0: the peer has read everything). @throws std::system_error
  void start(HANDLE h, std::function<void(DWORD)> done);
  /// True once the flush has ended (done has run).
  bool finished() const;
  /// Its result once finished: 0, or the Win32 error (ERROR_OPERATION_ABORTED if cancelled).
  DWORD error() const;
  /// Wait for the flush until `dl`; false if it is still running.
  bool wait_until(deadline dl);
  /// Cancel the flush until it ends, then join the helper. Idempotent.
  void stop() noexcept;
  /// Join a helper whose flush has ended (done has run or is about to return).
  void join() noexcept;

private:
  struct shared {
    std::mutex mu;
    std::condition_variable cv;
    HANDLE thread = nullptr; // the helper's own handle, for CancelSynchronousIo
    bool started = false, done = false;
    DWORD err = 0;
  };
  std::shared_ptr<shared> st_;
  std::thread t_;
};

} // namespace npipe::detail
