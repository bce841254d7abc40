// SPDX-License-Identifier: MIT
// The Linux pipe directory against other users (src/transport/pipe_dir_posix.cpp
// and reclaim_posix.cpp): servers and clients check every component of its
// path from / down, and a crashed server's name is reclaimed without a lock
// another user could hold. Cases that need a second user (uid 65534) run only
// as root.

#include "test_support.hpp"
#include "transport/pipe_dir_posix.hpp"

#include <npipe/npipe.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <latch>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
using namespace npipe;
using namespace npipe::test;

namespace {

// The tree of each test lives in the fixture's fresh mkdtemp directory
// (root-owned, 0755), which TearDown removes.
using PipeDir = local_test;

constexpr uid_t nobody = 65534;

bool root() { return ::geteuid() == 0; }

int as_nobody(const std::function<int()>& fn) {
  if (::setgid(nobody) != 0 || ::setuid(nobody) != 0) return 77;
  return fn();
}

std::string make_dir(const std::string& path, mode_t mode, uid_t uid = ::geteuid(), gid_t gid = ::getegid()) {
  EXPECT_EQ(::mkdir(path.c_str(), 0700), 0) << path << ": " << std::strerror(errno);
  EXPECT_EQ(::chown(path.c_str(), uid, gid), 0) << path;
  EXPECT_EQ(::chmod(path.c_str(), mode), 0) << path; // after chown, which clears set-id bits
  return path;
}

std::string make_link(const std::string& target, const std::string& path, uid_t uid = ::geteuid()) {
  EXPECT_EQ(::symlink(target.c_str(), path.c_str()), 0) << path;
  EXPECT_EQ(::lchown(path.c_str(), uid, static_cast<gid_t>(-1)), 0) << path;
  return path;
}

server_options in_dir(const std::string& d) {
  server_options o;
  o.pipe_dir = d;
  return o;
}

client_options client_in(const std::string& d, std::optional<std::uint32_t> require = {}) {
  client_options o;
  o.pipe_dir = d;
  o.require_server_uid = require;
  return o;
}

// Opens `s` (a server object not opened before): the error, with the detail kept in `detail`.
std::error_code open_in(server& s, const pipe_name& name, const server_options& o, std::string& detail) {
  std::error_code ec;
  s.open(name, o, ec);
  detail = ec ? last_error_detail() : std::string();
  return ec;
}

// Whether a server could open there (closed again at once).
std::error_code try_open(const pipe_name& name, const server_options& o, std::string& detail) {
  server s;
  return open_in(s, name, o, detail);
}

std::error_code connect_in(const pipe_name& name, const client_options& o, std::string& detail) {
  std::error_code ec;
  connect(name, o, 1s, ec);
  detail = ec ? last_error_detail() : std::string();
  return ec;
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

// ------------------------------------------------------- item 8: the directory

TEST_F(PipeDir, AGroupWritableDirectoryIsRefusedUnlessSticky) {
  auto name = random_pipe();
  gid_t group = root() ? nobody : ::getegid();
  auto d = make_dir(dir_ + "/group", 0775, ::geteuid(), group);
  std::string detail;
  EXPECT_EQ(try_open(name, in_dir(d), detail), errc::unsafe_directory) << "group members could replace our socket";
  EXPECT_TRUE(contains(detail, d)) << detail;
  EXPECT_TRUE(contains(detail, "group")) << detail;
  EXPECT_TRUE(contains(detail, "chmod g-w " + d)) << "says what to do: " << detail;

  {
    // A client checks too: a server's directory that became group-writable.
    ASSERT_EQ(::chmod(d.c_str(), 0755), 0);
    server s;
    ASSERT_FALSE(open_in(s, name, in_dir(d), detail)) << detail;
    ASSERT_EQ(::chmod(d.c_str(), 0775), 0);
    EXPECT_EQ(connect_in(name, client_in(d), detail), errc::unsafe_directory);
    EXPECT_TRUE(contains(detail, "group")) << detail;
  }

  // Sticky: members may add names but not remove or rename ours.
  ASSERT_EQ(::chmod(d.c_str(), 01775), 0);
  server s;
  EXPECT_FALSE(open_in(s, name, in_dir(d), detail)) << detail;
  EXPECT_FALSE(connect_in(name, client_in(d), detail)) << detail;
}

TEST_F(PipeDir, ARootOwnedDirectoryInsideAnotherUsersDirectoryIsRefused) {
  if (!root()) GTEST_SKIP() << "needs root to give a directory to another user";
  auto name = random_pipe();
  auto home = make_dir(dir_ + "/home", 0755, nobody, nobody);
  auto d = make_dir(home + "/pipes", 0755, 0, 0);
  std::string detail;
  EXPECT_EQ(try_open(name, in_dir(d), detail), errc::unsafe_directory)
      << "uid 65534 could rename pipes away and put its own in its place";
  EXPECT_TRUE(contains(detail, home + " ")) << "names the component: " << detail;
  EXPECT_TRUE(contains(detail, "uid 65534")) << detail;

  // A client as well: the server opened there while the parent was root's.
  ASSERT_EQ(::chown(home.c_str(), 0, 0), 0);
  server s;
  ASSERT_FALSE(open_in(s, name, in_dir(d), detail)) << detail;
  ASSERT_EQ(::chown(home.c_str(), nobody, nobody), 0);
  EXPECT_EQ(connect_in(name, client_in(d), detail), errc::unsafe_directory);
  EXPECT_TRUE(contains(detail, home + " ")) << detail;
  EXPECT_EQ(connect_in(name, client_in(d, 0), detail), errc::unsafe_directory) << "requiring root does not help";
}

TEST_F(PipeDir, ATrailingSlashDoesNotLetASymlinkThrough) {
  auto name = random_pipe();
  auto real = make_dir(dir_ + "/real", 0755);
  auto link = make_link(real, dir_ + "/link");
  for (std::string d : {link + "/", link + "//"}) {
    std::string detail;
    EXPECT_EQ(try_open(name, in_dir(d), detail), errc::unsafe_directory) << d;
    EXPECT_TRUE(contains(detail, "symbolic link")) << detail;
    EXPECT_TRUE(contains(detail, real)) << "says where it points: " << detail;
  }
  server s(name, in_dir(real + "/"));
  std::string detail;
  EXPECT_EQ(connect_in(name, client_in(link + "/"), detail), errc::unsafe_directory) << "clients refuse it too";
  EXPECT_FALSE(connect_in(name, client_in(real + "/"), detail)) << detail;
}

TEST_F(PipeDir, SymlinksInsideThePathAreFollowedOnlyWhenTrusted) {
  auto name = random_pipe();
  auto real = make_dir(dir_ + "/real", 0755);
  make_dir(real + "/pipes", 0755);
  make_link(real, dir_ + "/alias");      // absolute target
  make_link("real", dir_ + "/relative"); // relative target
  make_link("../real", real + "/up");    // .. in a target
  for (std::string d : {dir_ + "/alias/pipes", dir_ + "/relative/pipes", real + "/up/pipes"}) {
    server s;
    std::string detail;
    ASSERT_FALSE(open_in(s, name, in_dir(d), detail)) << d << ": " << detail;
    EXPECT_EQ(s.native_path(), d + "/" + name.folded_name()) << "the path as given";
    EXPECT_FALSE(connect_in(name, client_in(d), detail)) << d << ": " << detail;
  }

  make_link("loop2", dir_ + "/loop1");
  make_link("loop1", dir_ + "/loop2");
  std::string detail;
  EXPECT_EQ(try_open(name, in_dir(dir_ + "/loop1/pipes"), detail), errc::unsafe_directory) << "bounded";

  if (!root()) return;
  // A link another user owns can be pointed anywhere by that user.
  make_link(real, dir_ + "/theirs", nobody);
  EXPECT_EQ(try_open(name, in_dir(dir_ + "/theirs/pipes"), detail), errc::unsafe_directory);
  EXPECT_TRUE(contains(detail, dir_ + "/theirs ")) << detail;
  EXPECT_TRUE(contains(detail, "uid 65534")) << detail;
  // A trusted link into a directory another user owns: its target is checked.
  auto home = make_dir(dir_ + "/home", 0755, nobody, nobody);
  make_dir(home + "/pipes", 0755, 0, 0);
  make_link(home, dir_ + "/to-home");
  EXPECT_EQ(try_open(name, in_dir(dir_ + "/to-home/pipes"), detail), errc::unsafe_directory);
  EXPECT_TRUE(contains(detail, home + " ")) << detail;
  // .. after a link is the target's parent (as the kernel walks it).
  make_dir(home + "/inner", 0755, 0, 0);
  make_link(home + "/inner", dir_ + "/to-inner");
  EXPECT_EQ(try_open(name, in_dir(dir_ + "/to-inner/../pipes"), detail), errc::unsafe_directory);
  EXPECT_TRUE(contains(detail, home + " ")) << detail;
}

// Restores the working directory when it goes.
struct in_directory {
  explicit in_directory(const std::string& d) {
    old = std::filesystem::current_path();
    std::filesystem::current_path(d);
  }
  ~in_directory() { std::filesystem::current_path(old); }
  std::filesystem::path old;
};

TEST_F(PipeDir, ARelativeDirectoryIsCheckedFromTheRootDown) {
  auto name = random_pipe();
  make_dir(dir_ + "/rel", 0755);
  {
    in_directory cwd(dir_);
    server s;
    std::string detail;
    ASSERT_FALSE(open_in(s, name, in_dir("rel"), detail)) << detail;
    EXPECT_EQ(s.native_path(), "rel/" + name.folded_name()) << "the path as given: the file-name mapping stays";
    EXPECT_FALSE(connect_in(name, client_in("rel"), detail)) << detail;
    EXPECT_FALSE(connect_in(name, client_in("./rel/."), detail)) << detail;
  }
  if (!root()) return;
  auto home = make_dir(dir_ + "/home", 0755, nobody, nobody);
  make_dir(home + "/pipes", 0755, 0, 0);
  in_directory cwd(home);
  std::string detail;
  EXPECT_EQ(try_open(name, in_dir("pipes"), detail), errc::unsafe_directory) << "the cwd's parents count";
  EXPECT_TRUE(contains(detail, home + " ")) << detail;
}

TEST_F(PipeDir, ClientsTrustTheServerUsersOwnDirectoryButNotAThirdUser) {
  if (!root()) GTEST_SKIP() << "needs root to run a server as another user";
  auto name = random_pipe();
  // The documented shared setup: a user's own pipe directory its clients use.
  auto theirs = make_dir(dir_ + "/nobody", 0755, nobody, nobody);
  auto d = make_dir(theirs + "/pipes", 0755, nobody, nobody);
  // The same user's directory inside a third user's.
  auto third = make_dir(dir_ + "/third", 0755, 4242, 4242);
  auto d3 = make_dir(third + "/pipes", 0755, nobody, nobody);
  signal_pipe up, stop;
  gated_child srv([&] {
    return as_nobody([&] {
      server_options o = in_dir(d);
      o.access = access_policy::everyone();
      server s(name, o);
      server_options o3 = in_dir(d3);
      std::error_code ec;
      server s3;
      s3.open(name, o3, ec);
      if (ec != errc::unsafe_directory) return 3; // its own server refuses the third user's directory
      up.notify();
      stop.wait(30s);
      return 0;
    });
  });
  srv.start();
  ASSERT_TRUE(up.wait());
  std::string detail;
  EXPECT_FALSE(connect_in(name, client_in(d), detail)) << "the pipe's own server user owns it: " << detail;
  EXPECT_FALSE(connect_in(name, client_in(d, nobody), detail)) << detail;
  EXPECT_EQ(connect_in(name, client_in(d, 0), detail), errc::unsafe_directory)
      << "uid 65534 is not the server this client requires";
  EXPECT_TRUE(contains(detail, theirs + " ")) << detail;
  // Whoever owns the name's directory, a third user above it is never trusted.
  ASSERT_EQ(::rename(d.c_str(), (d3 + "/moved").c_str()), 0); // the live socket goes with it
  EXPECT_EQ(connect_in(name, client_in(d3 + "/moved", nobody), detail), errc::unsafe_directory);
  EXPECT_TRUE(contains(detail, third + " ")) << detail;
  EXPECT_TRUE(contains(detail, "uid 4242")) << detail;
  ASSERT_EQ(::rename((d3 + "/moved").c_str(), d.c_str()), 0);
  // Writable by its group (not sticky): unsafe whoever owns it.
  ASSERT_EQ(::chmod(d.c_str(), 0775), 0);
  EXPECT_EQ(connect_in(name, client_in(d, nobody), detail), errc::unsafe_directory);
  ASSERT_EQ(::chmod(d.c_str(), 0755), 0);
  stop.notify();
  EXPECT_EQ(srv.wait(), 0);
}

TEST_F(PipeDir, AMissingDirectoryIsStillNoServerForAClient) {
  auto name = random_pipe();
  std::string detail;
  EXPECT_EQ(connect_in(name, client_in(dir_ + "/none"), detail), errc::not_found) << detail;
  EXPECT_EQ(connect_in(name, client_in(dir_ + "/none/deeper"), detail), errc::not_found) << detail;
}

// --------------------------------- a client's remembered check of the directory
//
// A process remembers the directories its clients checked (held open) and
// connects through them; each connect still looks at the directory itself
// (src/transport/client_dir_posix.cpp). These rows change the directory
// after a first connect and check that the next one sees it.

// The server that got a connection, by who accepts it.
bool accepts(server& s) {
  std::error_code ec;
  auto c = s.accept(2s, ec);
  return !ec;
}

bool holds_none(server& s) {
  std::error_code ec;
  auto c = s.accept(0ms, ec);
  return ec == errc::timed_out;
}

// Opens `s` on `name` in `d` and connects once, so this process remembers d's check.
void serve_and_remember(server& s, const pipe_name& name, const std::string& d) {
  std::string detail;
  ASSERT_FALSE(open_in(s, name, in_dir(d), detail)) << detail;
  ASSERT_FALSE(connect_in(name, client_in(d), detail)) << detail;
  ASSERT_TRUE(accepts(s));
}

TEST_F(PipeDir, AClientReachesTheServerOfADirectoryThatReplacedTheOneItChecked) {
  auto name = random_pipe();
  auto d = make_dir(dir_ + "/pipes", 0755);
  std::string detail;
  server first;
  serve_and_remember(first, name, d);
  // Renamed away with its live server, and another directory in its place.
  ASSERT_EQ(::rename(d.c_str(), (dir_ + "/old").c_str()), 0);
  make_dir(d, 0755);
  server second;
  ASSERT_FALSE(open_in(second, name, in_dir(d), detail)) << detail;
  ASSERT_FALSE(connect_in(name, client_in(d), detail)) << detail;
  EXPECT_TRUE(accepts(second)) << "the server now at the path";
  EXPECT_TRUE(holds_none(first)) << "not the one in the directory renamed away";
}

TEST_F(PipeDir, ADirectoryRemovedAndMadeAgainIsCheckedAgain) {
  auto name = random_pipe();
  auto d = make_dir(dir_ + "/pipes", 0755);
  std::string detail;
  {
    server s;
    serve_and_remember(s, name, d);
  }
  ASSERT_EQ(::rmdir(d.c_str()), 0);
  make_dir(d, 0775, ::geteuid(), root() ? nobody : ::getegid()); // group-writable: unsafe
  EXPECT_EQ(connect_in(name, client_in(d), detail), errc::unsafe_directory) << detail;
  EXPECT_TRUE(contains(detail, "group")) << detail;
}

TEST_F(PipeDir, ARememberedDirectoryWhoseModeChangedIsRefusedAndThenTrustedAgain) {
  auto name = random_pipe();
  auto d = make_dir(dir_ + "/pipes", 0755);
  std::string detail;
  server s;
  serve_and_remember(s, name, d);
  ASSERT_EQ(::chmod(d.c_str(), 0757), 0);
  EXPECT_EQ(connect_in(name, client_in(d), detail), errc::unsafe_directory);
  EXPECT_TRUE(contains(detail, "everyone")) << detail;
  ASSERT_EQ(::chmod(d.c_str(), 0755), 0);
  EXPECT_FALSE(connect_in(name, client_in(d), detail)) << detail;
}

// A program may close descriptors it does not own (daemons do): the number
// that held the checked directory may then name another directory.
TEST_F(PipeDir, AClientWhoseProgramReusedTheRememberedDescriptorStillReachesItsServer) {
  auto name = random_pipe();
  auto d = make_dir(dir_ + "/pipes", 0755);
  auto other = make_dir(dir_ + "/other", 0755);
  std::string detail;
  server mine, decoy;
  ASSERT_FALSE(open_in(decoy, name, in_dir(other), detail)) << detail; // the same name in another directory
  serve_and_remember(mine, name, d);
  // The descriptor the client keeps for d.
  int held = -1;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(e.path(), ec) == d) held = std::stoi(e.path().filename().string());
  }
  ASSERT_GE(held, 0) << "the client holds " << d << " open";
  int o = ::open(other.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(o, 0);
  ASSERT_EQ(::dup2(o, held), held); // closes the client's, puts another directory there
  ::close(o);
  ASSERT_FALSE(connect_in(name, client_in(d), detail)) << detail;
  EXPECT_TRUE(accepts(mine)) << "the server in the configured directory";
  EXPECT_TRUE(holds_none(decoy));
  struct stat st{};
  EXPECT_EQ(::fstat(held, &st), 0) << "the reused descriptor is the program's: left open";
  ::close(held);
}

// What a remembered check does not look at again: the directories above. A
// parent made writable by everyone lets others replace the pipe directory,
// not change what is in it; the connect goes into the directory that passed,
// and a directory put in its place is walked again, and refused.
TEST_F(PipeDir, AParentLoosenedAfterTheCheckCannotSlipAnotherDirectoryIn) {
  auto name = random_pipe();
  auto parent = make_dir(dir_ + "/parent", 0755);
  auto d = make_dir(parent + "/pipes", 0755);
  std::string detail;
  server s;
  serve_and_remember(s, name, d);
  ASSERT_EQ(::chmod(parent.c_str(), 0777), 0);
  ASSERT_FALSE(connect_in(name, client_in(d), detail)) << "into the directory that passed: " << detail;
  ASSERT_TRUE(accepts(s));
  ASSERT_EQ(::rename(d.c_str(), (parent + "/away").c_str()), 0);
  make_dir(d, 0755);
  EXPECT_EQ(connect_in(name, client_in(d), detail), errc::unsafe_directory);
  EXPECT_TRUE(contains(detail, parent)) << detail;
  ASSERT_EQ(::chmod(parent.c_str(), 0755), 0);
}

// ------------------------------------------- item 9: reclaiming a crashed name

// A socket file with no listener: what a SIGKILLed server leaves.
void make_stale(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strcpy(sa.sun_path, path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ::listen(fd, 1);
  ::close(fd);
}

std::vector<std::string> entries(const std::string& d) {
  std::vector<std::string> out;
  for (auto& e : std::filesystem::directory_iterator(d))
    out.push_back(e.path().filename().string());
  return out;
}

TEST_F(PipeDir, AnotherUserHoldingEveryLockCannotDelayACrashedServersRestart) {
  if (!root()) GTEST_SKIP() << "needs root to run the lock holder as another user";
  // Shared like the machine-wide default: root's, world-writable, sticky.
  auto shared = make_dir(dir_ + "/shared", 01777, 0, 0);
  auto name = random_pipe();
  signal_pipe up, locked, stop;
  // Forked before any server opens (see gated_child).
  gated_child crashed([&] {
    server s(name, in_dir(shared));
    up.notify();
    stop.wait(60s);
    return 0;
  });
  gated_child holder([&] {
    return as_nobody([&] {
      std::vector<int> held;
      auto lock = [&](int fd) {
        if (fd < 0) return;
        ::flock(fd, LOCK_EX | LOCK_NB);
        struct flock fl{};
        fl.l_type = F_RDLCK; // what a read-only descriptor can hold
        fl.l_whence = SEEK_SET;
        ::fcntl(fd, F_SETLK, &fl);
        held.push_back(fd);
      };
      for (const std::string& d : {dir_, shared})
        lock(::open(d.c_str(), O_RDONLY | O_DIRECTORY));
      // Names a lock file might have, taken first.
      for (const std::string& f :
           std::vector<std::string>{".lock", ".npipe.lock", ".reclaim", name.folded_name() + ".lock"})
        lock(::open((shared + "/" + f).c_str(), O_RDWR | O_CREAT | O_EXCL, 0644));
      for (auto& f : entries(shared))
        lock(::open((shared + "/" + f).c_str(), O_RDONLY | O_NONBLOCK));
      if (held.size() < 6) return 2;
      locked.notify();
      stop.wait(60s);
      return 0;
    });
  });
  crashed.start();
  ASSERT_TRUE(up.wait());
  crashed.kill(SIGKILL);
  crashed.wait();
  holder.start();
  ASSERT_TRUE(locked.wait());

  auto t0 = std::chrono::steady_clock::now();
  server s;
  std::string detail;
  auto ec = open_in(s, name, in_dir(shared), detail);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(ec) << ec.message() << ": " << detail;
  EXPECT_LT(took, 1s);
  if (!ec) {
    auto c = connect(name, client_in(shared), 2s);
    EXPECT_TRUE(s.accept(2s).is_open());
  }
  stop.notify();
  EXPECT_EQ(holder.wait(), 0);
}

TEST_F(PipeDir, SameUserServersRacingToReclaimAStaleNameLeaveExactlyOneLiveServer) {
  constexpr int contenders = 8, rounds = 60;
  auto name = random_pipe();
  std::error_code ec;
  auto path = local_path(name, ec);
  ASSERT_FALSE(ec);
  for (int round = 0; round < rounds; ++round) {
    make_stale(path);
    std::vector<server> servers(contenders);
    std::vector<std::error_code> errors(contenders);
    std::latch start(contenders);
    std::vector<std::thread> threads;
    for (int i = 0; i < contenders; ++i)
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        servers[static_cast<std::size_t>(i)].open(name, {}, errors[static_cast<std::size_t>(i)]);
      });
    for (auto& t : threads)
      t.join();
    int winners = 0, winner = -1;
    for (int i = 0; i < contenders; ++i) {
      auto& e = errors[static_cast<std::size_t>(i)];
      if (!e)
        ++winners, winner = i;
      else
        EXPECT_EQ(e, errc::name_in_use) << "round " << round << ": " << e.message();
    }
    ASSERT_EQ(winners, 1) << "round " << round;
    // The name leads to the winner: no other server's socket took its place.
    auto c = connect(name, {}, 2s, ec);
    ASSERT_FALSE(ec) << "round " << round << ": " << ec.message() << " " << last_error_detail();
    EXPECT_TRUE(servers[static_cast<std::size_t>(winner)].accept(2s, ec).is_open()) << "round " << round;
    c.close();
    servers.clear();
    EXPECT_EQ(entries(dir_), std::vector<std::string>{}) << "round " << round << ": nothing left behind";
  }
}

TEST_F(PipeDir, AReclaimerWhoseLookIsOutOfDateGivesTheLiveSocketBack) {
  // A server judged the name's file stale; before it acts, another server of
  // the same user reclaims it and serves. The late one must leave that alone.
  auto name = random_pipe();
  std::error_code ec;
  auto path = local_path(name, ec);
  ASSERT_FALSE(ec);
  make_stale(path);
  server winner(name);
  struct stat live{};
  ASSERT_EQ(::lstat(path.c_str(), &live), 0);

  // The late server's own listening socket, in a private directory beside the name.
  std::string priv = dir_ + "/.tlate";
  ASSERT_EQ(::mkdir(priv.c_str(), 0700), 0);
  std::string slot = priv + "/s";
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strcpy(sa.sun_path, slot.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  struct stat mine{};
  ASSERT_EQ(::lstat(slot.c_str(), &mine), 0);

  EXPECT_EQ(detail::reclaim(slot, path, mine, ec), detail::reclaim_result::given_back) << ec.message();
  struct stat now{};
  ASSERT_EQ(::lstat(path.c_str(), &now), 0);
  EXPECT_TRUE(now.st_ino == live.st_ino && now.st_dev == live.st_dev) << "the winner's socket is back at the name";
  ASSERT_EQ(::lstat(slot.c_str(), &now), 0);
  EXPECT_TRUE(now.st_ino == mine.st_ino && now.st_dev == mine.st_dev) << "the late one holds its own again";
  auto c = connect(name, {}, 2s);
  EXPECT_TRUE(winner.accept(2s).is_open()) << "clients still reach the winner";
  ::close(fd);
  ::unlink(slot.c_str());
  ::rmdir(priv.c_str());

  // And when the file it finds is dead, it takes the name.
  winner.close();
  make_stale(path);
  std::string priv2 = dir_ + "/.tlate2";
  ASSERT_EQ(::mkdir(priv2.c_str(), 0700), 0);
  slot = priv2 + "/s";
  fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  std::strcpy(sa.sun_path, slot.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  ASSERT_EQ(::lstat(slot.c_str(), &mine), 0);
  EXPECT_EQ(detail::reclaim(slot, path, mine, ec), detail::reclaim_result::taken) << ec.message();
  ASSERT_EQ(::lstat(path.c_str(), &now), 0);
  EXPECT_TRUE(now.st_ino == mine.st_ino && now.st_dev == mine.st_dev);
  EXPECT_NE(::lstat(slot.c_str(), &now), 0) << "the dead file is gone";
  ::close(fd);
  ::unlink(path.c_str());
  ::rmdir(priv2.c_str());
}

} // namespace
