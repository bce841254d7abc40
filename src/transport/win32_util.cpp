// SPDX-License-Identifier: MIT
// Win32 helpers shared by the blocking pipes and the async runtime on IOCP:
// strings, errors, waits, who is at the other end of a handle, and the flush
// thread (win32_util.hpp).

#include "transport/win32_util.hpp"

#include <sddl.h>

#include <algorithm>
#include <climits>
#include <vector>

namespace npipe::detail {


std::wstring widen(const std::string& s) {
  if (s.empty()) return {};
  int n = ::MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), nullptr, 0);
  std::wstring w(static_cast<std::size_t>(n), L'\0');
  ::MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), w.data(), n);
  return w;
}

std::string narrow(const wchar_t* w) {
  int n = ::WideCharToMultiByte(CP_UTF8, 0, w, -1, nullptr, 0, nullptr, nullptr);
  if (n <= 1) return {};
  std::string s(static_cast<std::size_t>(n - 1), '\0');
  ::WideCharToMultiByte(CP_UTF8, 0, w, -1, s.data(), n, nullptr, nullptr);
  return s;
}

std::string narrow_name(const wchar_t* w) { return narrow(w); }

std::wstring wide_path(const pipe_name& name) { return widen("\\\\.\\pipe\\" + name.name()); }

std::error_code win32_error(DWORD e) {
  int os = static_cast<int>(e);
  switch (e) {
  case ERROR_FILE_NOT_FOUND:
  case ERROR_PATH_NOT_FOUND: return make_error_code(errc::not_found, os);
  case ERROR_PIPE_BUSY: return make_error_code(errc::pipe_busy, os);
  case ERROR_MORE_DATA: return make_error_code(errc::more_data, os);
  case ERROR_SEM_TIMEOUT: return make_error_code(errc::timed_out, os);
  case ERROR_BROKEN_PIPE:
  case ERROR_PIPE_NOT_CONNECTED:
  case ERROR_NO_DATA: return make_error_code(errc::broken_pipe, os);
  case ERROR_ACCESS_DENIED: return make_error_code(errc::access_denied, os);
  case ERROR_INVALID_NAME:
  case ERROR_BAD_PATHNAME:
  case ERROR_FILENAME_EXCED_RANGE: return make_error_code(errc::invalid_name, os);
  case ERROR_OPERATION_ABORTED: return make_error_code(errc::operation_aborted, os);
  case ERROR_INVALID_PARAMETER: return make_error_code(errc::invalid_argument, os);
  default: return make_error_code(errc::system_error, os);
  }
}

DWORD wait_ms(deadline dl) {
  if (dl.never()) return INFINITE;
  auto left = dl.remaining().count();
  return static_cast<DWORD>(std::clamp<long long>(left, 0, INFINITE - 1));
}

void close_native_handle(std::intptr_t h) noexcept { ::CloseHandle(reinterpret_cast<HANDLE>(h)); }


// The user of an access token: its SID as a string ("S-1-5-21-...") and,
// when asked, its account name (without the domain, as GetUserNameW says it).
std::string token_sid(HANDLE tok, std::string* account) {
  DWORD len = 0;
  ::GetTokenInformation(tok, TokenUser, nullptr, 0, &len);
  if (len == 0) return {};
  std::vector<BYTE> buf(len);
  if (!::GetTokenInformation(tok, TokenUser, buf.data(), len, &len)) return {};
  PSID user = reinterpret_cast<TOKEN_USER*>(buf.data())->User.Sid;
  std::string sid;
  LPWSTR s = nullptr;
  if (::ConvertSidToStringSidW(user, &s)) {
    sid = narrow(s);
    ::LocalFree(s);
  }
  if (account) {
    wchar_t name[256], domain[256];
    DWORD name_len = 256, domain_len = 256;
    SID_NAME_USE use;
    if (::LookupAccountSidW(nullptr, user, name, &name_len, domain, &domain_len, &use)) *account = narrow(name);
  }
  return sid;
}

std::string current_user_sid() {
  HANDLE tok = nullptr;
  if (!::OpenProcessToken(::GetCurrentProcess(), TOKEN_QUERY, &tok)) return {};
  std::string sid = token_sid(tok);
  ::CloseHandle(tok);
  return sid;
}

peer_identity client_of(HANDLE h) {
  peer_identity p;
  ULONG pid = 0;
  if (::GetNamedPipeClientProcessId(h, &pid)) p.pid = static_cast<std::int64_t>(pid);
  // The client's user as the pipe itself carries it (the client opened with
  // SECURITY_IDENTIFICATION): impersonate it, read the thread's token (as
  // ourselves: an identification token allows queries only), revert. Not
  // the process token found by pid: opening another user's process needs
  // rights a server seldom has, and a pid can be reused once its client has
  // gone. A client that opened anonymously leaves both empty. Works the
  // same under Wine.
  if (::ImpersonateNamedPipeClient(h)) {
    wchar_t name[256];
    DWORD len = 256;
    if (::GetUserNameW(name, &len)) p.user = narrow(name);
    HANDLE tok = nullptr;
    if (::OpenThreadToken(::GetCurrentThread(), TOKEN_QUERY, TRUE, &tok)) {
      p.sid = token_sid(tok);
      ::CloseHandle(tok);
    }
    ::RevertToSelf();
  }
  return p;
}

peer_identity server_of(HANDLE h) {
  peer_identity p;
  ULONG pid = 0;
  if (!::GetNamedPipeServerProcessId(h, &pid)) return p;
  p.pid = static_cast<std::int64_t>(pid);
  // A client cannot impersonate its server: read the server process's token
  // (the process lives while it holds the pipe, so the pid is its own). This
  // works when the server runs as the same user, or we are an administrator.
  if (HANDLE proc = ::OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid)) {
    HANDLE tok = nullptr;
    if (::OpenProcessToken(proc, TOKEN_QUERY, &tok)) {
      p.sid = token_sid(tok, &p.user);
      ::CloseHandle(tok);
    }
    ::CloseHandle(proc);
  }
  return p;
}

// ------------------------------------------------------- background_flush

void background_flush::start(HANDLE h, std::function<void(DWORD)> done) {
  stop();
  st_ = std::make_shared<shared>();
  t_ = std::thread([st = st_, h, done = std::move(done)] {
    {
      std::lock_guard lk(st->mu);
      ::DuplicateHandle(::GetCurrentProcess(), ::GetCurrentThread(), ::GetCurrentProcess(), &st->thread, 0, FALSE,
                        DUPLICATE_SAME_ACCESS);
      st->started = true;
    }
    BOOL ok = ::FlushFileBuffers(h);
    DWORD err = ok ? 0 : ::GetLastError();
    done(err);
    std::lock_guard lk(st->mu);
    st->err = err;
    st->done = true;
    st->cv.notify_all();
  });
}

bool background_flush::finished() const {
  if (!st_) return true;
  std::lock_guard lk(st_->mu);
  return st_->done;
}

DWORD background_flush::error() const {
  if (!st_) return 0;
  std::lock_guard lk(st_->mu);
  return st_->err;
}

bool background_flush::wait_until(deadline dl) {
  if (!st_) return true;
  std::unique_lock lk(st_->mu);
  if (dl.never()) {
    st_->cv.wait(lk, [&] { return st_->done; });
    return true;
  }
  return st_->cv.wait_until(lk, dl.at, [&] { return st_->done; });
}

void background_flush::stop() noexcept {
  if (!st_) return;
  {
    // Cancel until the flush gives up (it may not have started waiting yet).
    std::unique_lock lk(st_->mu);
    while (!st_->done) {
      if (st_->started && st_->thread) ::CancelSynchronousIo(st_->thread);
      st_->cv.wait_for(lk, std::chrono::milliseconds(10));
    }
  }
  join();
}

void background_flush::join() noexcept {
  if (t_.joinable()) {
    if (t_.get_id() == std::this_thread::get_id()) t_.detach(); // the helper itself, after its flush
    else t_.join();
  }
  if (st_ && st_->thread) ::CloseHandle(st_->thread);
  st_.reset();
}

} // namespace npipe::detail
