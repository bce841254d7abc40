// SPDX-License-Identifier: MIT
// Test helpers for Windows: the watchdog is a thread (no SIGALRM there).
#include "test_support.hpp"

#include <windows.h>
#include <tlhelp32.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace npipe::test {
namespace {
std::atomic<unsigned> generation{0};
}

void watchdog(unsigned seconds) {
  unsigned mine = ++generation;
  if (seconds == 0) return;
  std::thread([mine, seconds] {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < until) {
      if (generation.load() != mine) return; // re-armed or disarmed
      std::this_thread::sleep_for(std::chrono::milliseconds(100)); // the watchdog's tick
    }
    if (generation.load() != mine) return;
    std::fputs("\n*** watchdog: test hung; killed ***\n", stderr);
    std::fflush(stderr);
    std::_Exit(124);
  }).detach();
}

void local_test::SetUp() { watchdog(60); }
void local_test::TearDown() { watchdog(0); }

namespace {
std::wstring widen(const std::string& s) {
  if (s.empty()) return {};
  int n = ::MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), nullptr, 0);
  std::wstring w(static_cast<std::size_t>(n), L'\0');
  ::MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), w.data(), n);
  return w;
}

// One argument as CreateProcess's parser (CommandLineToArgvW rules) reads it back.
std::wstring quote(const std::wstring& a) {
  if (!a.empty() && a.find_first_of(L" \t\"") == std::wstring::npos) return a;
  std::wstring q = L"\"";
  std::size_t slashes = 0;
  for (wchar_t c : a) {
    if (c == L'\\') {
      ++slashes;
      continue;
    }
    q.append(c == L'"' ? 2 * slashes + 1 : slashes, L'\\');
    slashes = 0;
    q += c;
  }
  q.append(2 * slashes, L'\\');
  return q + L"\"";
}

// A Unix path of the build tree, as Wine sees it (drive Z: is /).
std::string windows_path(std::string p) {
  if (p.empty() || p[0] != '/') return p;
  for (auto& ch : p)
    if (ch == '/') ch = '\\';
  return "Z:" + p;
}

void drain(HANDLE h, std::string& into) {
  char buf[65536];
  DWORD n = 0;
  while (::ReadFile(h, buf, sizeof buf, &n, nullptr) && n > 0) into.append(buf, n);
}
} // namespace

run_result run(const std::vector<std::string>& argv, const std::string& input, std::chrono::milliseconds limit) {
  run_result r;
  // Not inheritable: a process another thread starts meanwhile must not get
  // our pipe ends (it would hold them open, and our reads would never end).
  HANDLE in_r = nullptr, in_w = nullptr, out_r = nullptr, out_w = nullptr, err_r = nullptr, err_w = nullptr;
  if (!::CreatePipe(&in_r, &in_w, nullptr, 0) || !::CreatePipe(&out_r, &out_w, nullptr, 0) ||
      !::CreatePipe(&err_r, &err_w, nullptr, 0))
    return r;
  std::wstring cmd;
  for (std::size_t i = 0; i < argv.size(); ++i)
    cmd += (i ? L" " : L"") + quote(widen(i == 0 ? windows_path(argv[0]) : argv[i]));
  STARTUPINFOW si{};
  si.cb = sizeof si;
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdInput = in_r;
  si.hStdOutput = out_w;
  si.hStdError = err_w;
  PROCESS_INFORMATION pi{};
  BOOL started = FALSE;
  {
    // The child's ends become inheritable only while this child is created.
    static std::mutex spawn_mu;
    std::lock_guard lk(spawn_mu);
    for (HANDLE h : {in_r, out_w, err_w}) ::SetHandleInformation(h, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
    started = ::CreateProcessW(nullptr, cmd.data(), nullptr, nullptr, TRUE, 0, nullptr, nullptr, &si, &pi);
    for (HANDLE h : {in_r, out_w, err_w}) ::SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0);
  }
  ::CloseHandle(in_r);
  ::CloseHandle(out_w);
  ::CloseHandle(err_w);
  std::thread out_reader([&] { drain(out_r, r.out); }), err_reader([&] { drain(err_r, r.err); });
  if (started) {
    DWORD written = 0;
    if (!input.empty()) ::WriteFile(in_w, input.data(), static_cast<DWORD>(input.size()), &written, nullptr);
    ::CloseHandle(in_w);
    if (::WaitForSingleObject(pi.hProcess, static_cast<DWORD>(limit.count())) != WAIT_OBJECT_0)
      ::TerminateProcess(pi.hProcess, 124);
    DWORD code = 0;
    ::WaitForSingleObject(pi.hProcess, INFINITE);
    ::GetExitCodeProcess(pi.hProcess, &code);
    r.exit_code = static_cast<int>(code);
    ::CloseHandle(pi.hThread);
    ::CloseHandle(pi.hProcess);
  } else {
    ::CloseHandle(in_w);
  }
  out_reader.join();
  err_reader.join();
  ::CloseHandle(out_r);
  ::CloseHandle(err_r);
  return r;
}

int open_fds() {
  DWORD n = 0;
  ::GetProcessHandleCount(::GetCurrentProcess(), &n);
  return static_cast<int>(n);
}

int thread_count() {
  HANDLE snap = ::CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
  if (snap == INVALID_HANDLE_VALUE) return -1;
  THREADENTRY32 te{};
  te.dwSize = sizeof te;
  int n = 0;
  DWORD me = ::GetCurrentProcessId();
  for (BOOL ok = ::Thread32First(snap, &te); ok; ok = ::Thread32Next(snap, &te))
    if (te.th32OwnerProcessID == me) ++n;
  ::CloseHandle(snap);
  return n;
}

process::process(const std::vector<std::string>& argv) {
  std::wstring cmd;
  for (std::size_t i = 0; i < argv.size(); ++i)
    cmd += (i ? L" " : L"") + quote(widen(i == 0 ? windows_path(argv[0]) : argv[i]));
  STARTUPINFOW si{};
  si.cb = sizeof si;
  PROCESS_INFORMATION pi{};
  // Inherits nothing: another test's pipe ends must not leak into it.
  if (!::CreateProcessW(nullptr, cmd.data(), nullptr, nullptr, FALSE, 0, nullptr, nullptr, &si, &pi)) return;
  ::CloseHandle(pi.hThread);
  handle_ = pi.hProcess;
  pid_ = static_cast<std::int64_t>(pi.dwProcessId);
}

process::~process() {
  kill();
  wait();
  if (handle_) ::CloseHandle(static_cast<HANDLE>(handle_));
}

void process::kill() {
  if (handle_ && !reaped_) ::TerminateProcess(static_cast<HANDLE>(handle_), 137);
}

int process::wait(std::chrono::milliseconds limit) {
  if (!handle_ || reaped_) return status_;
  HANDLE h = static_cast<HANDLE>(handle_);
  if (::WaitForSingleObject(h, static_cast<DWORD>(limit.count())) != WAIT_OBJECT_0) ::TerminateProcess(h, 124);
  ::WaitForSingleObject(h, INFINITE);
  DWORD code = 0;
  ::GetExitCodeProcess(h, &code);
  status_ = static_cast<int>(code);
  reaped_ = true;
  return status_;
}

std::int64_t this_thread_id() { return static_cast<std::int64_t>(::GetCurrentThreadId()); }

bool thread_waits(std::int64_t id) {
  HANDLE h = ::OpenThread(THREAD_QUERY_LIMITED_INFORMATION, FALSE, static_cast<DWORD>(id));
  if (!h) return false;
  auto cpu = [h] {
    FILETIME created, exited, kernel, user;
    if (!::GetThreadTimes(h, &created, &exited, &kernel, &user)) return ~0ull;
    auto v = [](FILETIME f) { return (static_cast<unsigned long long>(f.dwHighDateTime) << 32) | f.dwLowDateTime; };
    return v(kernel) + v(user);
  };
  auto before = cpu();
  std::this_thread::sleep_for(std::chrono::milliseconds(20)); // the only reading Windows offers: no CPU used meanwhile
  bool waits = before != ~0ull && cpu() == before;
  ::CloseHandle(h);
  return waits;
}

} // namespace npipe::test
