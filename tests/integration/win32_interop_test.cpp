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

} // namespace
