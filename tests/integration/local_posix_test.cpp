// SPDX-License-Identifier: MIT
// Integration tests for the Linux local transport (local_posix.cpp): real
// processes (fork), real sockets, random names, a watchdog on each. One test
// (or group) per row of DESIGN §1; the rows that need no fork, no socket
// file and no uid are in portable_test.cpp and run on Windows too (and over
// the gateway): message boundaries, partial reads, busy and waiting,
// disconnect, transact and call, flush, close().

#include "alloc_probe.hpp"
#include "raw_peer.hpp"
#include "test_support.hpp"

#include <npipe/npipe.hpp>

#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <future>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

using namespace std::chrono_literals;
using namespace npipe;
using namespace npipe::test;

namespace {

using Local = local_test;

// A child process that opens a server on `name`, serves one client with
// `body`, then waits for the client's last message (a client that leaves
// without one fails the child). Construct, then ASSERT_TRUE(srv.listening()).
class one_client_server {
public:
  one_client_server(const pipe_name& name, std::function<void(connection&)> body, server_options o = {})
      : child_([this, name, body = std::move(body), o] {
          server s(name, o);
          ready_.notify();
          auto c = s.accept(30s);
          body(c);
          c.receive();
          return 0;
        }) {}
  bool listening() { return ready_.wait(); }
  int wait() { return child_.wait(); }
  int pid() const { return child_.pid(); }

private:
  signal_pipe ready_; // declared first: the child uses it
  child child_;
};

// --------------------------------------------------------------- byte mode

TEST_F(Local, BytePipeIsAStream) {
  auto name = random_pipe();
  signal_pipe written;
  server_options o;
  o.type = pipe_type::byte;
  one_client_server srv(
      name,
      [&](connection& c) {
        EXPECT_EQ(c.type(), pipe_type::byte);
        EXPECT_EQ(c.read_mode(), read_mode::byte);
        c.write("abc");
        c.write("def");
        written.notify();
      },
      o);
  ASSERT_TRUE(srv.listening());
  auto c = connect(name);
  EXPECT_EQ(c.type(), pipe_type::byte);
  std::error_code ec;
  c.set_read_mode(read_mode::message, ec);
  EXPECT_EQ(ec, errc::invalid_argument) << "message read mode needs a message pipe";
  ASSERT_TRUE(written.wait());
  std::byte buf[64];
  auto r = c.read(buf);
  EXPECT_FALSE(r.more_data);
  EXPECT_EQ(text({buf, buf + r.bytes}), "abcdef") << "byte mode ignores write boundaries";
  c.write("x");
  EXPECT_EQ(srv.wait(), 0);
}

TEST_F(Local, ByteReadModeOnMessagePipeJoinsMessages) {
  auto name = random_pipe();
  signal_pipe written;
  one_client_server srv(name, [&](connection& c) {
    c.write("hello ");
    c.write("world");
    written.notify();
  });
  ASSERT_TRUE(srv.listening());
  client_options o;
  o.read_mode = read_mode::byte;
  auto c = connect(name, o);
  EXPECT_EQ(c.type(), pipe_type::message);
  ASSERT_TRUE(written.wait());
  std::byte buf[64];
  auto r = c.read(buf);
  EXPECT_EQ(text({buf, buf + r.bytes}), "hello world");
  c.write("x");
  EXPECT_EQ(srv.wait(), 0);
}

// ---------------------------------------------------- transact, call, peek

TEST_F(Local, TransactRefusesWithUnreadDataOrWrongMode) {
  auto name = random_pipe();
  server s(name);
  auto c = connect(name);
  auto sc = s.accept(5s);
  sc.write("unsolicited");
  std::error_code ec;
  c.transact(bytes("req"), 5s, ec);
  EXPECT_EQ(ec, errc::invalid_state) << "TransactNamedPipe fails when the pipe holds unread data";
  EXPECT_EQ(c.receive_string(), "unsolicited") << "and nothing was lost";
  c.set_read_mode(read_mode::byte);
  c.transact(bytes("req"), 5s, ec);
  EXPECT_EQ(ec, errc::invalid_state);
}

TEST_F(Local, PeekShowsWithoutConsuming) {
  auto name = random_pipe();
  server s(name);
  auto c = connect(name);
  auto sc = s.accept(5s);
  std::byte buf[100];
  auto empty = c.peek(buf);
  EXPECT_EQ(empty.total_available, 0u);
  EXPECT_EQ(empty.bytes_read, 0u);
  sc.write("hello");
  sc.write("world!!");
  auto p = c.peek(buf);
  EXPECT_EQ(p.total_available, 12u);
  EXPECT_EQ(p.left_this_message, 5u);
  EXPECT_EQ(p.bytes_read, 5u) << "message mode copies from the current message only";
  EXPECT_EQ(text({buf, buf + p.bytes_read}), "hello");
  auto again = c.peek(buf);
  EXPECT_EQ(again.total_available, 12u) << "peek consumed nothing";
  std::byte two[2];
  c.read(two);
  auto mid = c.peek({});
  EXPECT_EQ(mid.left_this_message, 3u);
  EXPECT_EQ(mid.total_available, 10u);
  EXPECT_EQ(c.receive_string(), "llo");
  c.set_read_mode(read_mode::byte);
  auto b = c.peek(buf);
  EXPECT_EQ(text({buf, buf + b.bytes_read}), "world!!");
  EXPECT_EQ(c.receive_string(), "world!!");
  sc.close();
  std::error_code ec;
  c.peek(buf, ec);
  EXPECT_EQ(ec, errc::broken_pipe);
}

// ------------------------------------------------------------------ identity

TEST_F(Local, PeerCredentialsOnBothEnds) {
  auto name = random_pipe();
  auto parent = ::getpid();
  one_client_server srv(name, [&](connection& c) {
    EXPECT_EQ(c.peer().pid, parent);
    EXPECT_EQ(c.peer().uid, static_cast<std::int64_t>(::geteuid()));
    EXPECT_EQ(c.peer().gid, static_cast<std::int64_t>(::getegid()));
    c.write("ok");
  });
  ASSERT_TRUE(srv.listening());
  auto c = connect(name);
  EXPECT_EQ(c.peer().pid, srv.pid());
  EXPECT_EQ(c.peer().uid, static_cast<std::int64_t>(::geteuid()));
  EXPECT_FALSE(c.peer().user.empty());
  EXPECT_EQ(c.receive_string(), "ok");
  c.write("bye");
  EXPECT_EQ(srv.wait(), 0);
}

TEST_F(Local, ClientCanRequireTheServersUser) {
  auto name = random_pipe();
  server s(name);
  client_options o;
  o.require_server_uid = ::geteuid() + 4242;
  std::error_code ec;
  connect(name, o, 2s, ec);
  EXPECT_EQ(ec, errc::access_denied);
  EXPECT_NE(last_error_detail().find("squatter"), std::string::npos) << last_error_detail();
  o.require_server_uid = ::geteuid();
  EXPECT_TRUE(connect(name, o, 2s).is_open());
}

// ------------------------------------------------------ names and ownership

TEST_F(Local, SecondServerOnALiveNameFailsAndTheFirstKeepsServing) {
  auto name = random_pipe();
  gated_child second([&] {
    std::error_code ec;
    server s;
    s.open(name, {}, ec);
    EXPECT_EQ(ec, errc::name_in_use) << ec.message();
    EXPECT_NE(last_error_detail().find("pid " + std::to_string(::getppid())), std::string::npos)
        << "names the owner: " << last_error_detail();
    return 0;
  });
  server first(name);
  auto path = first.native_path();
  second.start();
  EXPECT_EQ(second.wait(), 0);
  EXPECT_TRUE(std::filesystem::exists(path)) << "the loser did not remove our socket";
  auto c = connect(name);
  auto sc = first.accept(5s);
  c.write("still here");
  EXPECT_EQ(sc.receive_string(), "still here");
}

TEST_F(Local, StaleSocketFileIsReclaimed) {
  auto name = random_pipe();
  std::error_code ec;
  auto path = local_path(name, ec);
  ASSERT_FALSE(ec);
  {
    // What a crashed server leaves: a bound socket file with no listener.
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strcpy(sa.sun_path, path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    ::close(fd);
  }
  connect(name, {}, 1s, ec);
  EXPECT_EQ(ec, errc::not_found) << "a stale file is not a server";
  server s(name);
  auto c = connect(name);
  auto sc = s.accept(5s);
  EXPECT_TRUE(sc.is_open());
}

TEST_F(Local, NonSocketFileIsNeverDeleted) {
  auto name = random_pipe();
  std::error_code ec;
  auto path = local_path(name, ec);
  { std::FILE* f = std::fopen(path.c_str(), "w"); std::fputs("precious", f); std::fclose(f); }
  server s;
  s.open(name, {}, ec);
  EXPECT_EQ(ec, errc::name_in_use);
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST_F(Local, UnsafeDirectoriesAreRefused) {
  auto name = random_pipe();
  server_options o;
  std::error_code ec;
  o.pipe_dir = dir_ + "/open";
  ASSERT_EQ(::mkdir(o.pipe_dir.c_str(), 0777), 0);
  ::chmod(o.pipe_dir.c_str(), 0777);
  server s;
  s.open(name, o, ec);
  EXPECT_EQ(ec, errc::unsafe_directory) << "world-writable without sticky bit";
  EXPECT_NE(last_error_detail().find("sticky"), std::string::npos) << last_error_detail();
  ::chmod(o.pipe_dir.c_str(), 01777);
  s.open(name, o, ec);
  EXPECT_FALSE(ec) << "sticky is fine: " << ec.message();
  s.close();

  o.pipe_dir = dir_ + "/link";
  ASSERT_EQ(::symlink((dir_ + "/open").c_str(), o.pipe_dir.c_str()), 0);
  server s2;
  s2.open(name, o, ec);
  EXPECT_EQ(ec, errc::unsafe_directory) << "symlink";

  if (::geteuid() == 0) {
    o.pipe_dir = dir_ + "/theirs";
    ASSERT_EQ(::mkdir(o.pipe_dir.c_str(), 0755), 0);
    ASSERT_EQ(::chown(o.pipe_dir.c_str(), 65534, 65534), 0);
    server s3;
    s3.open(name, o, ec);
    EXPECT_EQ(ec, errc::unsafe_directory) << "owned by another user";
  }
}

// -------------------------------------------------------- access control

int as_nobody(const std::function<int()>& fn) {
  if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 77;
  return fn();
}

TEST_F(Local, OtherUsersAreRefusedByDefault) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as nobody";
  auto name = random_pipe();
  gated_child nobody([&] {
    return as_nobody([&] {
      std::error_code ec;
      connect(name, {}, 2s, ec);
      return ec == errc::access_denied ? 0 : 1;
    });
  });
  server s(name);
  nobody.start();
  EXPECT_EQ(nobody.wait(), 0) << "socket permissions refuse another uid";
}

TEST_F(Local, ANameSquattedByAnotherUserStopsOurServerAndClientsCanTellTheSquatter) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a squatter as nobody";
  // A directory shared like the machine-wide default: world-writable and sticky.
  std::string shared = dir_ + "/shared";
  ASSERT_EQ(::mkdir(shared.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(shared.c_str(), 01777), 0);
  auto name = random_pipe();
  signal_pipe up, stop;
  gated_child squatter([&] {
    return as_nobody([&] {
      server_options so;
      so.pipe_dir = shared;
      so.access = access_policy::everyone();
      std::error_code ec;
      server s;
      s.open(name, so, ec);
      if (ec) return 2;
      up.notify();
      stop.wait(std::chrono::seconds(30));
      return 0;
    });
  });
  squatter.start();
  ASSERT_TRUE(up.wait());
  server_options o;
  o.pipe_dir = shared;
  std::error_code ec;
  server ours;
  ours.open(name, o, ec);
  EXPECT_EQ(ec, errc::name_in_use) << "our server refuses to start on a squatted name";
  EXPECT_NE(last_error_detail().find("uid 65534"), std::string::npos) << last_error_detail();
  client_options co;
  co.pipe_dir = shared;
  co.require_server_uid = ::geteuid();
  connect(name, co, 2s, ec);
  EXPECT_EQ(ec, errc::access_denied) << "a client requiring our uid refuses the squatter";
  stop.notify();
  EXPECT_EQ(squatter.wait(), 0);
}

TEST_F(Local, CredentialCheckRefusesUsersNotOnTheList) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as nobody";
  auto name = random_pipe();
  server_options o;
  o.access = access_policy::only({12345}); // socket mode 0666: only the credential check stands in the way
  gated_child nobody([&] {
    return as_nobody([&] {
      std::error_code ec;
      connect(name, {}, 2s, ec);
      return ec == errc::access_denied ? 0 : 1;
    });
  });
  server s(name, o);
  nobody.start();
  EXPECT_EQ(nobody.wait(), 0);
  std::error_code ec;
  s.accept(200ms, ec);
  EXPECT_EQ(ec, errc::timed_out) << "the refused client never reached accept()";
}

TEST_F(Local, EveryoneAndListPoliciesAdmitExactlyWhomTheySay) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as nobody";
  for (auto policy : {access_policy::everyone(), access_policy::only({65534}), access_policy::group(65534)}) {
    auto name = random_pipe();
    server_options o;
    o.access = policy;
    gated_child nobody([&] {
      return as_nobody([&] {
        auto c = connect(name, {}, 5s);
        return c.transact(std::string_view("hi")) == "hello nobody" ? 0 : 1;
      });
    });
    server s(name, o);
    nobody.start();
    auto c = s.accept(10s);
    EXPECT_EQ(c.peer().uid, 65534);
    EXPECT_EQ(c.receive_string(), "hi");
    c.write("hello nobody");
    EXPECT_EQ(nobody.wait(), 0) << static_cast<int>(policy.who);
  }
}

// ---------------------------------------------------------------- bad input

TEST_F(Local, HugeLengthPrefixIsRefusedWithoutAllocating) {
  auto name = random_pipe();
  server s(name);
  int fd = raw_connect(s.native_path());
  ASSERT_GE(fd, 0);
  auto hello = raw_hello(name);
  ASSERT_EQ(::send(fd, hello.data(), hello.size(), 0), static_cast<ssize_t>(hello.size()));
  char reply[16];
  ASSERT_EQ(::recv(fd, reply, 16, MSG_WAITALL), 16);
  EXPECT_EQ(reply[5], 0) << "handshake ok";
  const char frame[] = {1, '\xff', '\xff', '\xff', '\xff', 'x'};
  ASSERT_EQ(::send(fd, frame, sizeof frame, 0), static_cast<ssize_t>(sizeof frame));
  auto bad = s.accept(5s);

  alloc_probe probe;
  std::error_code ec;
  auto m = bad.receive(5s, ec);
  EXPECT_EQ(ec, errc::message_too_large) << ec.message();
  EXPECT_LT(probe.largest(), 1u << 20) << "nothing near 4 GiB was allocated";
  EXPECT_TRUE(m.empty());
  bad.receive(1s, ec);
  EXPECT_EQ(ec, errc::message_too_large) << "the connection stays failed; the stream cannot be resynchronised";
  EXPECT_TRUE(closed_by_server(fd)) << "the offender was disconnected";
  ::close(fd);

  auto good = connect(name);
  auto sc = s.accept(5s);
  good.write("fine");
  EXPECT_EQ(sc.receive_string(), "fine") << "other clients are unaffected";
}

TEST_F(Local, GarbageAfterConnectIsRefusedAndOthersAreServed) {
  auto name = random_pipe();
  server s(name);
  int fd = raw_connect(s.native_path());
  ASSERT_GE(fd, 0);
  std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
  char reply[16];
  EXPECT_EQ(::recv(fd, reply, 16, MSG_WAITALL), 16);
  EXPECT_EQ(reply[5], 5) << "status protocol_error";
  EXPECT_TRUE(closed_by_server(fd)) << "then closed";
  ::close(fd);
  auto good = connect(name);
  auto sc = s.accept(5s);
  EXPECT_EQ(sc.peer().pid, ::getpid()) << "the garbage client never became a connection";
}

TEST_F(Local, SilentClientIsDroppedAtTheHandshakeTimeout) {
  auto name = random_pipe();
  server_options o;
  o.handshake_timeout = 200ms;
  server s(name, o);
  int fd = raw_connect(s.native_path());
  ASSERT_GE(fd, 0);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(closed_by_server(fd));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
  ::close(fd);
  EXPECT_TRUE(connect(name).is_open());
}

TEST_F(Local, WriteOverThePeersLimitSendsNothing) {
  auto name = random_pipe();
  server_options o;
  o.max_message_size = 4096;
  server s(name, o);
  auto c = connect(name);
  EXPECT_EQ(c.peer_max_message_size(), 4096u);
  std::error_code ec;
  c.write(pattern(4097, 1), ec);
  EXPECT_EQ(ec, errc::message_too_large);
  c.write(pattern(4096, 2));
  auto sc = s.accept(5s);
  EXPECT_EQ(sc.receive(), pattern(4096, 2)) << "the connection is intact and the refused message never arrived";
}

// ----------------------------------------------------- crashes and lifecycle

TEST_F(Local, ServerKilledWhileClientWaitsGivesBrokenPipePromptly) {
  auto name = random_pipe();
  signal_pipe accepted;
  child srv([&] {
    server s(name);
    auto c = s.accept(30s);
    accepted.notify();
    for (;;) ::pause(); // until killed
    return 0;
  });
  connection c;
  wait_until([&] { // once the child serves the name
    std::error_code ec;
    c = connect(name, {}, 1s, ec);
    return c.is_open();
  });
  ASSERT_TRUE(c.is_open());
  ASSERT_TRUE(accepted.wait());
  std::atomic<std::int64_t> reader{this_thread_id()};
  std::thread killer([&] {
    EXPECT_TRUE(wait_until_waiting(reader)) << "the client never blocked in receive()";
    srv.kill(SIGKILL);
  });
  std::error_code ec;
  auto t0 = std::chrono::steady_clock::now();
  c.receive(30s, ec);
  killer.join();
  EXPECT_EQ(ec, errc::broken_pipe) << ec.message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST_F(Local, WritingToAClosedPeerIsAnErrorNotSigpipe) {
  auto name = random_pipe();
  std::signal(SIGPIPE, SIG_DFL); // a SIGPIPE would kill this test
  server s(name);
  auto c = connect(name);
  s.accept(5s).close();
  std::error_code ec;
  auto chunk = pattern(64 << 10, 3);
  for (int i = 0; i < 100 && !ec; ++i) c.write(chunk, 5s, ec);
  EXPECT_EQ(ec, errc::broken_pipe) << ec.message();
}

TEST_F(Local, ServersAreLocalAndRemoteClientsNeedTlsSettings) {
  std::error_code ec;
  server s;
  s.open(pipe_name("\\\\host\\pipe\\x"), {}, ec);
  EXPECT_EQ(ec, errc::invalid_name) << "a server creates a local name; a gateway makes it reachable";
  connect(pipe_name("\\\\127.0.0.1\\pipe\\x"), {}, 1s, ec);
  EXPECT_EQ(ec, errc::invalid_argument) << "no TLS settings and no explicit --insecure";
  EXPECT_NE(last_error_detail().find("tls.ca_file"), std::string::npos) << last_error_detail();
}

TEST_F(Local, ListShowsLiveAndStalePipes) {
  auto name = random_pipe();
  server s(name);
  std::error_code ec;
  auto pipes = list_local_pipes(ec);
  ASSERT_FALSE(ec);
  ASSERT_EQ(pipes.size(), 1u);
  EXPECT_EQ(pipes[0].file, name.folded_name());
  EXPECT_TRUE(pipes[0].live);
  EXPECT_EQ(pipes[0].owner_uid, static_cast<long>(::geteuid()));
}

TEST(LocalDefaultDirectory, MachineWideDirectoryIsCreatedSafely) {
  watchdog(60);
  ::unsetenv("NPIPE_DIR");
  EXPECT_EQ(pipe_directory(), std::string(default_pipe_directory));
  auto name = random_pipe();
  std::error_code ec;
  server s;
  s.open(name, {}, ec);
  if (ec == errc::unsafe_directory) GTEST_SKIP() << last_error_detail();
  ASSERT_FALSE(ec) << ec.message() << " " << last_error_detail();
  struct stat st{};
  ASSERT_EQ(::lstat(default_pipe_directory, &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_TRUE((st.st_mode & S_IWOTH) == 0 || (st.st_mode & S_ISVTX)) << "shared means sticky";
  EXPECT_EQ(s.native_path(), std::string(default_pipe_directory) + "/" + name.folded_name());
  EXPECT_TRUE(connect(name).is_open());
  ::alarm(0);
}

} // namespace

