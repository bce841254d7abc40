// SPDX-License-Identifier: MIT
#pragma once
// Win32 helpers shared by the blocking pipes (local_win32.cpp,
// client_win32.cpp, pipe_end_win32.cpp) and the async runtime on IOCP
// (runtime/async_*_win32.cpp).

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

/// The user of an access token: its SID as a string ("S-1-5-21-...") and,
/// when asked, its account name (without the domain, as GetUserNameW says it).
std::string token_sid(HANDLE tok, std::string* account = nullptr);
/// This process's user SID.
std::string current_user_sid();

/// A connected pipe end over `h` (server or client side), owning it.
/// `on_close`, if set, takes over the (disconnected) handle: a server
/// reuses its instance for the next client, as Win32 servers do.
std::unique_ptr<connection_impl> make_pipe_end(HANDLE h, bool server_side, pipe_type type, npipe::read_mode mode,
                                               pipe_name name, std::size_t max_message, peer_identity peer,
                                               std::function<void(HANDLE)> on_close);


// A manual-reset event owned by one direction of one handle.
class event {
public:
  event() : h_(::CreateEventW(nullptr, TRUE, FALSE, nullptr)) {}
  ~event() {
    if (h_) ::CloseHandle(h_);
  }
  event(const event&) = delete;
  event& operator=(const event&) = delete;
  HANDLE get() const noexcept { return h_; }

private:
  HANDLE h_;
};

enum class io_end { done, timed_out, failed };

// Runs one overlapped call on `h`: `start(ov)` issues it. Waits until it
// completes or the deadline passes (then cancels it and reports what it did
// anyway). `n` gets the bytes moved; `err` the Win32 error (ERROR_MORE_DATA
// counts as done).
template <class Start>
io_end overlapped(HANDLE h, HANDLE ev, deadline dl, Start start, DWORD& n, DWORD& err) {
  OVERLAPPED ov{};
  ov.hEvent = ev;
  ::ResetEvent(ev);
  n = 0;
  err = 0;
  if (!start(&ov)) {
    err = ::GetLastError();
    if (err != ERROR_IO_PENDING) {
      if (err == ERROR_MORE_DATA) {
        ::GetOverlappedResult(h, &ov, &n, FALSE);
        return io_end::done;
      }
      return io_end::failed;
    }
    if (::WaitForSingleObject(ev, wait_ms(dl)) == WAIT_TIMEOUT) {
      ::CancelIoEx(h, &ov);
      if (::GetOverlappedResult(h, &ov, &n, TRUE)) { // it finished just in time
        err = 0;
        return io_end::done;
      }
      err = ::GetLastError();
      if (err == ERROR_OPERATION_ABORTED) return io_end::timed_out;
      return err == ERROR_MORE_DATA ? io_end::done : io_end::failed;
    }
  }
  if (::GetOverlappedResult(h, &ov, &n, FALSE)) {
    err = 0;
    return io_end::done;
  }
  err = ::GetLastError();
  return err == ERROR_MORE_DATA ? io_end::done : io_end::failed;
}


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
