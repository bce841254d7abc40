// SPDX-License-Identifier: MIT
// Interoperability with plain Win32 code, written exactly as the seed's
// NamedPipeClient and NamedPipeServer are: npipe must be a real named pipe
// that any Windows program can talk to, both ways, with messages larger than
// the pipe's buffers.

#include "test_support.hpp"

#include <npipe/npipe.hpp>

#include <gtest/gtest.h>

#include <windows.h>

#include <thread>

using namespace std::chrono_literals;
using namespace npipe;
using namespace npipe::test;

namespace {

using Interop = local_test;

std::wstring wide(const std::string& s) { return std::wstring(s.begin(), s.end()); }

// The seed's client: CreateFile, WaitNamedPipe on busy, message read mode,
// WriteFile, then ReadFile in a loop while it says ERROR_MORE_DATA.
std::vector<std::byte> seed_client(const std::string& path, const std::vector<std::byte>& request, DWORD& error) {
  error = 0;
  HANDLE h = INVALID_HANDLE_VALUE;
  for (int tries = 0; tries < 50; ++tries) {
    h = ::CreateFileW(wide(path).c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, OPEN_EXISTING, 0, nullptr);
    if (h != INVALID_HANDLE_VALUE) break;
    if (::GetLastError() != ERROR_PIPE_BUSY || !::WaitNamedPipeW(wide(path).c_str(), 2000)) {
      error = ::GetLastError();
      return {};
    }
  }
  DWORD mode = PIPE_READMODE_MESSAGE;
  if (!::SetNamedPipeHandleState(h, &mode, nullptr, nullptr)) {
    error = ::GetLastError();
    ::CloseHandle(h);
    return {};
  }
  DWORD written = 0;
  if (!::WriteFile(h, request.data(), static_cast<DWORD>(request.size()), &written, nullptr) ||
      written != request.size()) {
    error = ::GetLastError();
    ::CloseHandle(h);
    return {};
  }
  std::vector<std::byte> reply;
  std::byte chunk[4096];
  for (;;) {
    DWORD n = 0;
    BOOL ok = ::ReadFile(h, chunk, sizeof chunk, &n, nullptr);
    reply.insert(reply.end(), chunk, chunk + n);
    if (ok) break;
    if (::GetLastError() != ERROR_MORE_DATA) {
      error = ::GetLastError();
      break;
    }
  }
  ::CloseHandle(h);
  return reply;
}

TEST_F(Interop, PlainWin32ClientTalksToAnNpipeServer) {
  auto name = random_pipe();
  server srv(name);
  const auto request = pattern(150'000, 1), answer = pattern(200'000, 2); // both over the 64 KiB pipe buffers
  std::vector<std::byte> got;
  std::thread t([&] {
    auto c = srv.accept(20s);
    got = c.receive(20s);
    c.write(answer, 20s);
    c.flush(20s);
    c.close();
  });
  DWORD err = 0;
  auto reply = seed_client(srv.native_path(), request, err);
  t.join();
  EXPECT_EQ(err, 0u);
  EXPECT_TRUE(got == request) << "the npipe server received the whole message";
  EXPECT_TRUE(reply == answer) << "the plain client read the whole reply through ERROR_MORE_DATA";
}

TEST_F(Interop, NpipeClientTalksToAPlainWin32Server) {
  auto name = random_pipe();
  const std::string path = "\\\\.\\pipe\\" + name.name();
  const auto request = pattern(150'000, 3), answer = pattern(200'000, 4);
  // The seed's server: small buffers, so both messages exceed them.
  HANDLE h = ::CreateNamedPipeW(wide(path).c_str(), PIPE_ACCESS_DUPLEX,
                                PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT, 1, 4096, 4096, 0, nullptr);
  ASSERT_NE(h, INVALID_HANDLE_VALUE);
  std::vector<std::byte> got;
  DWORD server_error = 0;
  std::thread t([&] {
    if (!::ConnectNamedPipe(h, nullptr) && ::GetLastError() != ERROR_PIPE_CONNECTED) {
      server_error = ::GetLastError();
      return;
    }
    std::byte chunk[4096];
    for (;;) { // read one message of any length
      DWORD n = 0;
      BOOL ok = ::ReadFile(h, chunk, sizeof chunk, &n, nullptr);
      got.insert(got.end(), chunk, chunk + n);
      if (ok) break;
      if (::GetLastError() != ERROR_MORE_DATA) {
        server_error = ::GetLastError();
        return;
      }
    }
    DWORD written = 0;
    if (!::WriteFile(h, answer.data(), static_cast<DWORD>(answer.size()), &written, nullptr))
      server_error = ::GetLastError();
    ::FlushFileBuffers(h);
    ::DisconnectNamedPipe(h);
  });
  auto c = connect(name, {}, 10s);
  EXPECT_EQ(c.type(), pipe_type::message);
  c.write(request, 20s);
  auto reply = c.receive(20s);
  t.join();
  ::CloseHandle(h);
  EXPECT_EQ(server_error, 0u);
  EXPECT_TRUE(got == request) << "the plain server read the whole message through ERROR_MORE_DATA";
  EXPECT_TRUE(reply == answer) << "npipe received the whole reply";
  std::error_code ec;
  c.receive(5s, ec);
  EXPECT_EQ(ec, errc::broken_pipe) << "after DisconnectNamedPipe";
}

#ifdef NPIPE_CLI_PATH
// The npipe.exe under test, as a Windows path (a Unix build path under Wine
// is drive Z:).
std::wstring cli_path() {
  std::string p = NPIPE_CLI_PATH;
  if (!p.empty() && p[0] == '/') {
    for (auto& ch : p)
      if (ch == '/') ch = '\\';
    p = "Z:" + p;
  }
  return wide(p);
}

// Runs npipe.exe with `args`, collecting its standard output.
struct cli_run {
  HANDLE process = nullptr;
  HANDLE out_read = nullptr;
  std::string out;
  std::thread reader;

  explicit cli_run(const std::wstring& args) {
    SECURITY_ATTRIBUTES sa{sizeof sa, nullptr, TRUE};
    HANDLE out_write = nullptr;
    ::CreatePipe(&out_read, &out_write, &sa, 0);
    ::SetHandleInformation(out_read, HANDLE_FLAG_INHERIT, 0);
    STARTUPINFOW si{};
    si.cb = sizeof si;
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdOutput = out_write;
    si.hStdError = out_write;
    si.hStdInput = ::GetStdHandle(STD_INPUT_HANDLE);
    PROCESS_INFORMATION pi{};
    std::wstring cmd = L"\"" + cli_path() + L"\" " + args;
    if (::CreateProcessW(nullptr, cmd.data(), nullptr, nullptr, TRUE, 0, nullptr, nullptr, &si, &pi)) {
      process = pi.hProcess;
      ::CloseHandle(pi.hThread);
    }
    ::CloseHandle(out_write);
    reader = std::thread([this] {
      char buf[65536];
      DWORD n = 0;
      while (::ReadFile(out_read, buf, sizeof buf, &n, nullptr) && n > 0) out.append(buf, n);
    });
  }
  // The exit code, or -1 if it did not start or end within `limit_ms`.
  int wait(DWORD limit_ms = 30000) {
    if (!process) {
      reader.join();
      return -1;
    }
    DWORD code = static_cast<DWORD>(-1);
    if (::WaitForSingleObject(process, limit_ms) != WAIT_OBJECT_0) ::TerminateProcess(process, 99);
    ::GetExitCodeProcess(process, &code);
    reader.join();
    return static_cast<int>(code);
  }
  ~cli_run() {
    if (reader.joinable()) wait();
    if (process) ::CloseHandle(process);
    ::CloseHandle(out_read);
  }
};

TEST_F(Interop, PlainWin32ClientTalksToNpipeExeServe) {
  auto name = random_pipe();
  const std::string path = "\\\\.\\pipe\\" + name.name();
  cli_run serve(L"serve --once --echo " + wide(name.name()));
  const auto request = pattern(150'000, 5); // over the 64 KiB pipe buffers; --echo answers with it
  // The seed's client, once the server's name exists.
  std::vector<std::byte> reply;
  DWORD err = ERROR_FILE_NOT_FOUND;
  for (int i = 0; i < 200 && err == ERROR_FILE_NOT_FOUND; ++i) {
    reply = seed_client(path, request, err);
    if (err == ERROR_FILE_NOT_FOUND) std::this_thread::sleep_for(50ms); // kept: polling until npipe.exe serves
  }
  EXPECT_EQ(err, 0u);
  EXPECT_TRUE(reply == request) << "npipe.exe serve --echo answered the whole message";
  EXPECT_EQ(serve.wait(), 0) << serve.out;
  EXPECT_NE(serve.out.find("Bytes received: 150000"), std::string::npos) << serve.out;
}

TEST_F(Interop, NpipeExeSendTalksToAPlainWin32Server) {
  auto name = random_pipe();
  const std::string path = "\\\\.\\pipe\\" + name.name();
  std::string request(150'000, 'q'), answer(200'000, 'a');
  // The message goes in a file (npipe send --file).
  wchar_t dir[MAX_PATH], file[MAX_PATH];
  ::GetTempPathW(MAX_PATH, dir);
  ASSERT_NE(::GetTempFileNameW(dir, L"npi", 0, file), 0u);
  {
    HANDLE f = ::CreateFileW(file, GENERIC_WRITE, 0, nullptr, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, nullptr);
    ASSERT_NE(f, INVALID_HANDLE_VALUE);
    DWORD n = 0;
    ::WriteFile(f, request.data(), static_cast<DWORD>(request.size()), &n, nullptr);
    ::CloseHandle(f);
  }
  HANDLE h = ::CreateNamedPipeW(wide(path).c_str(), PIPE_ACCESS_DUPLEX,
                                PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT, 1, 4096, 4096, 0, nullptr);
  ASSERT_NE(h, INVALID_HANDLE_VALUE);
  std::string got;
  std::thread server([&] { // the seed's server
    if (!::ConnectNamedPipe(h, nullptr) && ::GetLastError() != ERROR_PIPE_CONNECTED) return;
    char chunk[4096];
    for (;;) {
      DWORD n = 0;
      BOOL ok = ::ReadFile(h, chunk, sizeof chunk, &n, nullptr);
      got.append(chunk, n);
      if (ok || ::GetLastError() != ERROR_MORE_DATA) break;
    }
    DWORD written = 0;
    ::WriteFile(h, answer.data(), static_cast<DWORD>(answer.size()), &written, nullptr);
    ::FlushFileBuffers(h);
    ::DisconnectNamedPipe(h);
  });
  cli_run send(L"send " + wide(name.name()) + L" --file \"" + std::wstring(file) + L"\" --timeout 20000");
  int rc = send.wait();
  server.join();
  ::CloseHandle(h);
  ::DeleteFileW(file);
  EXPECT_EQ(rc, 0) << send.out.substr(0, 300);
  EXPECT_TRUE(got == request) << "the plain server read the whole message (" << got.size() << " bytes)";
  std::string out = send.out;
  if (out.size() >= 2 && out.compare(out.size() - 2, 2, "\r\n") == 0) out.replace(out.size() - 2, 2, "\n"); // text-mode stdout
  EXPECT_TRUE(out == "Response received: [" + answer + "]\n")
      << "npipe send printed " << out.size() << " bytes: " << out.substr(0, 80);
}
#endif

} // namespace
