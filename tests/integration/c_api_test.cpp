// SPDX-License-Identifier: MIT
// The C interface (include/npipe/npipe.h, src/capi/npipe_c.cpp) against
// real pipes, on Linux and on Windows (under Wine): every call's success and
// its failures, each with its status, OS code and message in the caller's
// npipe_error. The seed demo in C is examples.seed_c.

#include "test_support.hpp"

#include <npipe/npipe.h>
#include <npipe/npipe.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <future>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using namespace npipe::test;

namespace {

std::string name_of(const npipe::pipe_name& n) { return n.str(); }

struct server_handle {
  npipe_server* s = nullptr;
  ~server_handle() { npipe_server_free(s); }
};
struct connection_handle {
  npipe_connection* c = nullptr;
  ~connection_handle() { npipe_connection_free(c); }
};

// A server on a fresh name and one connection to it, both ways.
struct pair_fixture : ::testing::Test {
  std::string name = name_of(random_pipe());
  server_handle srv;
  connection_handle client, served;
  npipe_error err{};

  void open(npipe_server_options* o = nullptr) {
    ASSERT_EQ(npipe_server_open(name.c_str(), o, &srv.s, &err), NPIPE_OK) << err.message;
    ASSERT_EQ(npipe_connect(name.c_str(), nullptr, 5000, &client.c, &err), NPIPE_OK) << err.message;
    ASSERT_EQ(npipe_server_accept(srv.s, 5000, &served.c, &err), NPIPE_OK) << err.message;
  }
};
using CApi = pair_fixture;

TEST(CApiBasics, VersionAndStatusNames) {
  EXPECT_STREQ(npipe_version(), npipe::version);
  EXPECT_EQ(npipe_version_number(), NPIPE_VERSION_NUMBER);
  EXPECT_STREQ(npipe_status_name(NPIPE_PIPE_BUSY), "pipe_busy");
  EXPECT_STREQ(npipe_status_name(NPIPE_OK), "ok");
  EXPECT_STREQ(npipe_status_name(99), "unknown");
  EXPECT_STREQ(npipe_status_name(-1), "unknown");
  for (int s = 0; s <= NPIPE_SYSTEM_ERROR; ++s)
    EXPECT_STREQ(npipe_status_name(s), npipe::to_string(static_cast<npipe::errc>(s)));
}

TEST(CApiBasics, FailuresFillTheCallersErrorAndSuccessClearsIt) {
  npipe_error err;
  std::memset(&err, 'x', sizeof err);
  npipe_connection* c = reinterpret_cast<npipe_connection*>(1);
  auto name = name_of(random_pipe());
  EXPECT_EQ(npipe_connect(name.c_str(), nullptr, 0, &c, &err), NPIPE_NOT_FOUND);
  EXPECT_EQ(c, nullptr) << "no handle on failure";
  EXPECT_EQ(err.status, NPIPE_NOT_FOUND);
  EXPECT_NE(std::string(err.message).find("no server"), std::string::npos) << err.message;
  EXPECT_LT(std::strlen(err.message), sizeof err.message);
  // NULL for the error is fine.
  EXPECT_EQ(npipe_connect(name.c_str(), nullptr, 0, &c, nullptr), NPIPE_NOT_FOUND);
  EXPECT_EQ(npipe_connect("bad\\name/", nullptr, 0, &c, &err), NPIPE_INVALID_NAME) << err.message;
  EXPECT_EQ(npipe_connect(nullptr, nullptr, 0, &c, &err), NPIPE_INVALID_ARGUMENT);
  EXPECT_EQ(npipe_connect(name.c_str(), nullptr, 0, nullptr, &err), NPIPE_INVALID_ARGUMENT);
  // A success leaves nothing of the last failure.
  server_handle s;
  ASSERT_EQ(npipe_server_open(name.c_str(), nullptr, &s.s, &err), NPIPE_OK);
  EXPECT_EQ(err.status, NPIPE_OK);
  EXPECT_STREQ(err.message, "");
  EXPECT_EQ(err.os_code, 0);
  if (under_wine()) return; // Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE (PortableOnce.SecondServerOnALiveNameFails)
  server_handle again;
  EXPECT_EQ(npipe_server_open(name.c_str(), nullptr, &again.s, &err), NPIPE_NAME_IN_USE);
  EXPECT_EQ(again.s, nullptr);
  EXPECT_NE(std::string(err.message).find(name), std::string::npos) << "names the pipe: " << err.message;
}

TEST(CApiBasics, OptionsAreCheckedWhereTheyAreUsed) {
  npipe_error err;
  auto* o = npipe_server_options_new();
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(npipe_server_options_set_max_instances(o, 0, &err), NPIPE_OK);
  EXPECT_EQ(npipe_server_options_set_type(o, 7, &err), NPIPE_INVALID_ARGUMENT);
  EXPECT_EQ(npipe_server_options_set_read_mode(o, -1, &err), NPIPE_INVALID_ARGUMENT);
  EXPECT_EQ(npipe_server_options_set_read_mode(nullptr, NPIPE_READ_BYTE, &err), NPIPE_INVALID_ARGUMENT);
  server_handle s;
  auto name = name_of(random_pipe());
  EXPECT_EQ(npipe_server_open(name.c_str(), o, &s.s, &err), NPIPE_INVALID_ARGUMENT);
  EXPECT_NE(std::string(err.message).find("max_instances"), std::string::npos) << err.message;
  npipe_server_options_free(o);
  npipe_server_options_free(nullptr);
  npipe_client_options_free(nullptr);
  npipe_server_free(nullptr);
  npipe_connection_free(nullptr);
  npipe_free(nullptr);
}

TEST_F(CApi, WriteReadMoreDataPeekReceiveAndFlush) {
  open();
  const std::string msg = "a message longer than sixteen bytes";
  ASSERT_EQ(npipe_write(client.c, msg.data(), msg.size(), 5000, &err), NPIPE_OK) << err.message;
  // peek: nothing consumed, no wait.
  char head[4];
  std::size_t copied = 0, available = 0, left = 0;
  std::string peeked;
  ASSERT_TRUE(wait_until([&] {
    npipe_peek(served.c, head, sizeof head, &copied, &available, &left, &err);
    return available == msg.size();
  }));
  EXPECT_EQ(copied, 4u);
  EXPECT_EQ(left, msg.size());
  EXPECT_EQ(std::string(head, 4), "a me");
  // read in pieces: more_data until the end.
  char part[16];
  std::size_t got = 0;
  int more = 0;
  ASSERT_EQ(npipe_read(served.c, part, sizeof part, &got, &more, 5000, &err), NPIPE_OK) << err.message;
  EXPECT_EQ(got, 16u);
  EXPECT_EQ(more, 1);
  std::string all(part, got);
  // receive into a small buffer: MORE_DATA, the rest stays to read.
  std::size_t size = 0;
  EXPECT_EQ(npipe_receive(served.c, part, 8, &size, 5000, &err), NPIPE_MORE_DATA);
  EXPECT_EQ(size, 8u);
  all.append(part, size);
  npipe_peek(served.c, nullptr, 0, nullptr, nullptr, &left, &err);
  EXPECT_EQ(left, msg.size() - 24);
  void* rest = nullptr;
  ASSERT_EQ(npipe_receive_alloc(served.c, &rest, &size, 5000, &err), NPIPE_OK) << err.message;
  all.append(static_cast<char*>(rest), size);
  npipe_free(rest);
  EXPECT_EQ(all, msg);
  // flush returns once the peer has read what came before it.
  ASSERT_EQ(npipe_write(served.c, "x", 1, 5000, &err), NPIPE_OK);
  std::atomic<std::int64_t> flusher{0};
  auto flushed = std::async(std::launch::async, [&] {
    flusher = this_thread_id();
    npipe_error ferr;
    return npipe_flush(served.c, 10000, &ferr);
  });
  ASSERT_TRUE(wait_until_waiting(flusher)) << "flush returned or never waited while the client had not read";
  npipe_error cerr;
  char one;
  ASSERT_EQ(npipe_receive(client.c, &one, 1, &size, 5000, &cerr), NPIPE_OK) << cerr.message;
  EXPECT_EQ(flushed.get(), NPIPE_OK);
  // A timed-out receive says so.
  EXPECT_EQ(npipe_receive(client.c, &one, 1, &size, 0, &cerr), NPIPE_TIMED_OUT);
}

TEST_F(CApi, TransactAndCallInBuffersAndAllocated) {
  open();
  auto echo = std::async(std::launch::async, [&] {
    npipe_error serr;
    for (int i = 0; i < 2; ++i) {
      void* m = nullptr;
      std::size_t n = 0;
      if (npipe_receive_alloc(served.c, &m, &n, 10000, &serr) != NPIPE_OK) return false;
      bool okw = npipe_write(served.c, m, n, 10000, &serr) == NPIPE_OK;
      npipe_free(m);
      if (!okw) return false;
    }
    return true;
  });
  char reply[64];
  std::size_t size = 0;
  ASSERT_EQ(npipe_transact(client.c, "ping", 4, reply, sizeof reply, &size, 5000, &err), NPIPE_OK) << err.message;
  EXPECT_EQ(std::string(reply, size), "ping");
  void* big = nullptr;
  std::string request(100000, 'r');
  ASSERT_EQ(npipe_transact_alloc(client.c, request.data(), request.size(), &big, &size, 5000, &err), NPIPE_OK);
  EXPECT_EQ(size, request.size());
  EXPECT_EQ(std::memcmp(big, request.data(), size), 0);
  npipe_free(big);
  EXPECT_TRUE(echo.get());

  // call: a second server (this one is taken by the pair) that answers "pong!".
  std::string cname = name_of(random_pipe());
  server_handle cs;
  ASSERT_EQ(npipe_server_open(cname.c_str(), nullptr, &cs.s, &err), NPIPE_OK);
  auto answer = std::async(std::launch::async, [&] {
    npipe_error serr;
    for (int i = 0; i < 2; ++i) {
      connection_handle c;
      if (npipe_server_accept(cs.s, 10000, &c.c, &serr) != NPIPE_OK) return false;
      char in[16];
      std::size_t n = 0;
      if (npipe_receive(c.c, in, sizeof in, &n, 10000, &serr) != NPIPE_OK) return false;
      if (npipe_write(c.c, "pong!", 5, 10000, &serr) != NPIPE_OK) return false;
      // As the seed's server: a Win32 pipe closed before the client read discards the reply.
      if (npipe_flush(c.c, 10000, &serr) != NPIPE_OK) return false;
    }
    return true;
  });
  EXPECT_EQ(npipe_call(cname.c_str(), "hi", 2, reply, 3, &size, 5000, nullptr, &err), NPIPE_MORE_DATA);
  EXPECT_EQ(size, 5u) << "the whole reply's length";
  EXPECT_EQ(std::string(reply, 3), "pon");
  void* r = nullptr;
  ASSERT_EQ(npipe_call_alloc(cname.c_str(), "hi", 2, &r, &size, 5000, nullptr, &err), NPIPE_OK) << err.message;
  EXPECT_EQ(std::string(static_cast<char*>(r), size), "pong!");
  npipe_free(r);
  EXPECT_TRUE(answer.get());
}

TEST_F(CApi, ReadModesInfoAndPeer) {
  auto* o = npipe_server_options_new();
  ASSERT_EQ(npipe_server_options_set_type(o, NPIPE_TYPE_BYTE, &err), NPIPE_OK);
  open(o);
  npipe_server_options_free(o);
  npipe_pipe_info info{};
  ASSERT_EQ(npipe_connection_info(client.c, &info, &err), NPIPE_OK);
  EXPECT_EQ(info.type, NPIPE_TYPE_BYTE);
  EXPECT_EQ(info.read_mode, NPIPE_READ_BYTE);
  EXPECT_EQ(info.is_open, 1);
  EXPECT_NE(std::string(info.name).find(name), std::string::npos) << info.name;
  EXPECT_GT(info.max_message_size, 0u);
  // Message read mode on a byte pipe is refused, as SetNamedPipeHandleState does.
  EXPECT_NE(npipe_set_read_mode(client.c, NPIPE_READ_MESSAGE, &err), NPIPE_OK);
  EXPECT_NE(err.message[0], '\0');
  EXPECT_EQ(npipe_set_read_mode(client.c, NPIPE_READ_BYTE, &err), NPIPE_OK);
  npipe_peer_identity who{};
  ASSERT_EQ(npipe_connection_peer(served.c, &who, &err), NPIPE_OK);
  EXPECT_EQ(who.pid, self_pid()) << "the client is this process";
  EXPECT_STREQ(who.remote_address, "");
  // The server's end sees the client's close: broken_pipe.
  npipe_connection_close(client.c);
  npipe_connection_close(client.c); // again: nothing
  char b;
  std::size_t n;
  EXPECT_EQ(npipe_receive(served.c, &b, 1, &n, 5000, &err), NPIPE_BROKEN_PIPE);
  EXPECT_EQ(npipe_write(client.c, "x", 1, 0, &err), NPIPE_NOT_CONNECTED);
}

TEST_F(CApi, CloseFromAnotherThreadWakesABlockedReadAndServerCloseWakesAccept) {
  open();
  std::atomic<std::int64_t> reader{0};
  auto blocked = std::async(std::launch::async, [&] {
    reader = this_thread_id();
    npipe_error rerr;
    char b;
    std::size_t n;
    return npipe_receive(served.c, &b, 1, &n, NPIPE_FOREVER, &rerr);
  });
  ASSERT_TRUE(wait_until_waiting(reader)) << "the reader never blocked";
  npipe_connection_close(served.c);
  ASSERT_EQ(blocked.wait_for(10s), std::future_status::ready);
  EXPECT_NE(blocked.get(), NPIPE_OK);

  std::atomic<std::int64_t> acceptor{0};
  auto waiting = std::async(std::launch::async, [&] {
    acceptor = this_thread_id();
    npipe_error aerr;
    npipe_connection* c = nullptr;
    auto st = npipe_server_accept(srv.s, NPIPE_FOREVER, &c, &aerr);
    npipe_connection_free(c);
    return st;
  });
  ASSERT_TRUE(wait_until_waiting(acceptor)) << "accept never blocked";
  npipe_server_close(srv.s);
  ASSERT_EQ(waiting.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(waiting.get(), NPIPE_OPERATION_ABORTED);
}

} // namespace

#ifdef _WIN32
#include <windows.h>
#else
#include <poll.h>
#endif

namespace {
// Whether a server's or connection's native handle says "ready" within `ms`:
// poll() on Linux, WaitForSingleObject on Windows (the server's event).
bool ready(intptr_t h, int ms) {
#ifdef _WIN32
  return ::WaitForSingleObject(reinterpret_cast<HANDLE>(h), static_cast<DWORD>(ms)) == WAIT_OBJECT_0;
#else
  pollfd p{static_cast<int>(h), POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
#endif
}
} // namespace

// npipe_connection_native_handle / npipe_server_native_handle: the socket
// (Linux) or pipe HANDLE (Windows) of a connection, and the server's
// readiness descriptor (an eventfd, or an event on Windows) that is ready
// exactly while an accept would not wait; closed or NULL ends are refused.
TEST_F(CApi, NativeHandles) {
  open();
  intptr_t hc = -1, hs = -1;
  ASSERT_EQ(npipe_connection_native_handle(client.c, &hc, &err), NPIPE_OK) << err.message;
  ASSERT_EQ(npipe_connection_native_handle(served.c, &hs, &err), NPIPE_OK) << err.message;
  EXPECT_NE(hc, hs);
#ifdef _WIN32
  DWORD flags = 0;
  ASSERT_TRUE(::GetNamedPipeInfo(reinterpret_cast<HANDLE>(hc), &flags, nullptr, nullptr, nullptr));
  EXPECT_EQ(flags & (PIPE_TYPE_MESSAGE | PIPE_SERVER_END), DWORD(PIPE_TYPE_MESSAGE)) << "the client end";
  ASSERT_TRUE(::GetNamedPipeInfo(reinterpret_cast<HANDLE>(hs), &flags, nullptr, nullptr, nullptr));
  EXPECT_EQ(flags & (PIPE_TYPE_MESSAGE | PIPE_SERVER_END), DWORD(PIPE_TYPE_MESSAGE | PIPE_SERVER_END));
#else
  EXPECT_FALSE(ready(hs, 0));
  ASSERT_EQ(npipe_write(client.c, "ping", 4, 5000, &err), NPIPE_OK) << err.message;
  ASSERT_TRUE(ready(hs, 10000));
  char buf[16];
  size_t got = 0;
  int more = 1;
  ASSERT_EQ(npipe_read(served.c, buf, sizeof buf, &got, &more, 0, &err), NPIPE_OK) << err.message;
  EXPECT_EQ(std::string(buf, got), "ping");
  EXPECT_EQ(npipe_read(served.c, buf, sizeof buf, &got, &more, 0, &err), NPIPE_TIMED_OUT);
#endif

  // A client already connected when the handle is first asked for
  // (Windows: ConnectNamedPipe says ERROR_PIPE_CONNECTED).
  connection_handle early, early_accepted;
  ASSERT_EQ(npipe_connect(name.c_str(), nullptr, 5000, &early.c, &err), NPIPE_OK) << err.message;
  intptr_t l = -1, again = -1;
  ASSERT_EQ(npipe_server_native_handle(srv.s, &l, &err), NPIPE_OK) << err.message;
  ASSERT_TRUE(ready(l, 10000));
  ASSERT_EQ(npipe_server_accept(srv.s, 0, &early_accepted.c, &err), NPIPE_OK) << err.message;
  ASSERT_EQ(npipe_server_native_handle(srv.s, &again, &err), NPIPE_OK) << err.message;
  EXPECT_EQ(l, again) << "one handle for the server's life";
  EXPECT_FALSE(ready(l, 0));
  connection_handle none;
  EXPECT_EQ(npipe_server_accept(srv.s, 0, &none.c, &err), NPIPE_TIMED_OUT);
  EXPECT_FALSE(ready(l, 0)) << "an accept that timed out changes nothing";
  for (int round = 0; round < 2; ++round) { // the second round: on the instance made for the next client
    connection_handle later, accepted;
    ASSERT_EQ(npipe_connect(name.c_str(), nullptr, 5000, &later.c, &err), NPIPE_OK) << err.message;
    ASSERT_TRUE(ready(l, 10000)) << "round " << round;
    ASSERT_EQ(npipe_server_accept(srv.s, 0, &accepted.c, &err), NPIPE_OK) << err.message;
    EXPECT_FALSE(ready(l, 0)) << "round " << round;
    ASSERT_EQ(npipe_write(later.c, "hi", 2, 5000, &err), NPIPE_OK) << err.message;
    char b[4];
    size_t n = 0;
    ASSERT_EQ(npipe_receive(accepted.c, b, sizeof b, &n, 5000, &err), NPIPE_OK) << err.message;
    EXPECT_EQ(std::string(b, n), "hi");
  }
  npipe_server_close(srv.s);
  EXPECT_TRUE(ready(l, 0)) << "a closed server's handle wakes its loop";
  EXPECT_EQ(npipe_server_accept(srv.s, 0, &none.c, &err), NPIPE_OPERATION_ABORTED);

  EXPECT_EQ(npipe_connection_native_handle(nullptr, &hc, &err), NPIPE_INVALID_ARGUMENT);
  EXPECT_EQ(npipe_connection_native_handle(client.c, nullptr, &err), NPIPE_INVALID_ARGUMENT);
  EXPECT_EQ(npipe_server_native_handle(nullptr, &hc, &err), NPIPE_INVALID_ARGUMENT);
  npipe_connection_close(client.c);
  EXPECT_EQ(npipe_connection_native_handle(client.c, &hc, &err), NPIPE_NOT_CONNECTED);
  EXPECT_EQ(hc, -1);
}
