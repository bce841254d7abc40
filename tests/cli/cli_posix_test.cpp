// SPDX-License-Identifier: MIT
// The seed demo through the built `npipe` binary: serve and send as separate
// processes, as a user would run them.

#include "remote_support.hpp"
#include "test_support.hpp"

#include <csignal>
#include <filesystem>
#include <fcntl.h>
#include <fstream>
#include <future>
#include <grp.h>
#include <netinet/in.h>
#include <regex>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace std::chrono_literals;
using namespace npipe::test;

namespace {

const std::string npipe_bin = NPIPE_CLI_PATH;

using Cli = local_test;

void quiet() { // a serving child's per-request lines would flood the test log
  int null = ::open("/dev/null", O_WRONLY);
  ::dup2(null, 1);
}

bool wait_for_file(const std::string& path, std::chrono::milliseconds limit = 10s) {
  return npipe::test::wait_until([&] { return std::filesystem::exists(path); }, limit);
}

std::string socket_of(const std::string& name) {
  std::error_code ec;
  return npipe::local_path(npipe::pipe_name(name), ec);
}

// `npipe serve --echo NAME` in a forked child, its per-request lines to /dev/null.
std::function<int()> echo_server(const std::string& name) {
  return [name] {
    quiet();
    ::execl(npipe_bin.c_str(), npipe_bin.c_str(), "serve", "--echo", name.c_str(), nullptr);
    return 127;
  };
}

TEST_F(Cli, SeedDemoServeOnceAndSend) {
  auto name = "\\\\.\\pipe\\" + random_name("cli");
  auto server = std::async(std::launch::async, [&] { return run({npipe_bin, "serve", "--once", name}); });
  ASSERT_TRUE(wait_for_file(socket_of(name)));
  auto client = run({npipe_bin, "send", name, "some text"});
  EXPECT_EQ(client.exit_code, 0) << client.err;
  EXPECT_TRUE(std::regex_search(client.out, std::regex(R"(^Response received: \[npipe \d+\.\d+\.\d+ \| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]\n$)")))
      << client.out;
  auto s = server.get();
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_NE(s.out.find("Bytes received: 9\n"), std::string::npos) << s.out;
  EXPECT_FALSE(std::filesystem::exists(socket_of(name))) << "the server removed its name";
}

TEST_F(Cli, ServeUntilInterruptedEchoStdinAndFile) {
  auto name = random_name("cli");
  auto log = dir_ + "/serve.out";
  child server([&] {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::execl(npipe_bin.c_str(), npipe_bin.c_str(), "serve", "--echo", name.c_str(), nullptr);
    return 127;
  });
  ASSERT_TRUE(wait_for_file(socket_of(name)));
  auto a = run({npipe_bin, "send", name, "one"});
  EXPECT_EQ(a.out, "Response received: [one]\n") << a.err;
  auto b = run({npipe_bin, "send", name}, "from stdin");
  EXPECT_EQ(b.out, "Response received: [from stdin]\n") << b.err;
  auto file = dir_ + "/msg.bin";
  std::string big(200'000, 'z');
  { std::FILE* f = std::fopen(file.c_str(), "wb"); std::fwrite(big.data(), 1, big.size(), f); std::fclose(f); }
  auto c = run({npipe_bin, "call", name, "--file", file});
  EXPECT_EQ(c.out, big) << "call prints the raw reply";
  auto l = run({npipe_bin, "list"});
  EXPECT_NE(l.out.find("live"), std::string::npos) << l.out;

  server.kill(SIGINT);
  EXPECT_EQ(server.wait(), 0) << "Ctrl-C is a clean stop";
  EXPECT_FALSE(std::filesystem::exists(socket_of(name)));
  std::string out = run({"/bin/cat", log}).out;
  EXPECT_NE(out.find("Bytes received: 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Bytes received: 10\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Bytes received: 200000\n"), std::string::npos) << out;
}

TEST_F(Cli, SendToMissingPipeFailsWithCodeAndMessage) {
  auto r = run({npipe_bin, "send", "\\\\.\\pipe\\" + random_name("none"), "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("error 1 (not_found)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no server is listening"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST_F(Cli, BadNameIsAUsageError) {
  auto r = run({npipe_bin, "send", "\\\\.\\pipe\\a/b", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("not a pipe name"), std::string::npos) << r.err;
}

// --resume sets how long certificate clients resume; a gateway without
// --ca has none, so the flag there is a mistake, said at once.
TEST_F(Cli, GatewayResumeNeedsClientCertificates) {
  auto psk = dir_ + "/psk.txt";
  {
    std::ofstream f(psk);
    f << "a:" << std::string(64, '7') << "\n";
  }
  ASSERT_EQ(::chmod(psk.c_str(), 0600), 0);
  auto r = run({npipe_bin, "gateway", "--export", "x", "--listen", "127.0.0.1", "--port", "0", "--psk-file", psk,
                "--resume", "60"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--resume needs --ca"), std::string::npos) << r.err;
  r = run({npipe_bin, "gateway", "--export", "x", "--port", "0", "--resume", "604801", "--psk-file", psk});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--resume"), std::string::npos) << r.err;
  // serve --remote has the same flag, with the same rule; without --remote it is ignored, so refused.
  auto name = random_name("resume");
  r = run({npipe_bin, "serve", name, "--remote", "--listen", "127.0.0.1", "--port", "0", "--psk-file", psk,
           "--resume", "60"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--resume needs --ca"), std::string::npos) << r.err;
  r = run({npipe_bin, "serve", name, "--resume", "60"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--resume needs --remote"), std::string::npos) << r.err;
}

TEST_F(Cli, HelpOnEverySubcommand) {
  for (std::string sub : {"serve", "send", "call", "list", "bench"}) {
    auto r = run({npipe_bin, sub, "--help"});
    EXPECT_EQ(r.exit_code, 0) << sub;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub << ": " << r.out;
  }
  auto v = run({npipe_bin, "--version"});
  EXPECT_NE(v.out.find(npipe::version), std::string::npos);
}

TEST_F(Cli, BenchMeasuresARunningServer) {
  auto name = random_name("cli");
  child server(echo_server(name));
  ASSERT_TRUE(wait_for_file(socket_of(name)));
  auto r = run({npipe_bin, "bench", name, "--count", "200", "--seconds", "0.2", "--size", "65536"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(round trip 64 B p50 [0-9.]+ us, p99 [0-9.]+ us \(200 samples\); 65536-byte requests [0-9.]+ MiB/s)")))
      << r.out;
  server.kill(SIGINT);
  EXPECT_EQ(server.wait(), 0);
}

TEST_F(Cli, CtrlCDisconnectsIdleClientsAndExits) {
  auto name = random_name("cli");
  child server([&] {
    quiet();
    ::execl(npipe_bin.c_str(), npipe_bin.c_str(), "serve", name.c_str(), nullptr);
    return 127;
  });
  ASSERT_TRUE(wait_for_file(socket_of(name)));
  std::vector<npipe::connection> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(npipe::connect(npipe::pipe_name(name)));
  // Each served once, then idle: the server has taken all three.
  for (auto& c : idle) EXPECT_EQ(c.transact(std::string_view("hi")).substr(0, 6), "npipe ");
  auto t0 = std::chrono::steady_clock::now();
  server.kill(SIGINT);
  EXPECT_EQ(server.wait(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "idle clients do not hold the server up";
  std::error_code ec;
  idle[1].receive(2s, ec);
  EXPECT_EQ(ec, npipe::errc::broken_pipe) << "and they learn the server is gone";
}

TEST_F(Cli, SecondServeOnALiveNameFails) {
  auto name = random_name("cli");
  auto first = std::async(std::launch::async, [&] { return run({npipe_bin, "serve", "--once", name}); });
  ASSERT_TRUE(wait_for_file(socket_of(name)));
  auto second = run({npipe_bin, "serve", name});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.err.find("name_in_use"), std::string::npos) << second.err;
  run({npipe_bin, "send", name, "stop"});
  EXPECT_EQ(first.get().exit_code, 0);
}

TEST_F(Cli, ServeAnswersManyConcurrentSendClientsAndSaysWhoCameAndWent) {
  auto name = random_name("cli");
  auto log = dir_ + "/serve.out";
  child server([&] {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::execl(npipe_bin.c_str(), npipe_bin.c_str(), "serve", "--echo", "--verbose", "--quiet", "--threads", "2",
            name.c_str(), nullptr);
    return 127;
  });
  ASSERT_TRUE(wait_for_file(socket_of(name)));
  // Clients as separate `npipe send` processes, all at once.
  constexpr int clients = 32;
  std::vector<std::future<run_result>> sends;
  for (int i = 0; i < clients; ++i)
    sends.push_back(std::async(std::launch::async, [&, i] {
      return run({npipe_bin, "send", name, "client " + std::to_string(i), "--timeout", "20000"});
    }));
  for (int i = 0; i < clients; ++i) {
    auto r = sends[static_cast<std::size_t>(i)].get();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "Response received: [client " + std::to_string(i) + "]\n");
  }
  server.kill(SIGINT);
  EXPECT_EQ(server.wait(), 0);
  std::string out = run({"/bin/cat", log}).out;
  auto count = [&](const std::regex& re) {
    return std::distance(std::sregex_iterator(out.begin(), out.end(), re), std::sregex_iterator());
  };
  EXPECT_EQ(count(std::regex(R"(client \d+ connected: pid \d+, uid \d+)")), clients) << out;
  EXPECT_EQ(count(std::regex(R"(client \d+ disconnected after 1 request\n)")), clients) << out;
  EXPECT_EQ(out.find("Bytes received"), std::string::npos) << "--quiet";
}

// ------------------------------------------------------------ usage errors

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Exit 2 and one line on stderr, nothing on stdout, and no server left behind.
void expect_usage_error(const std::vector<std::string>& args, const std::string& name = {}) {
  std::vector<std::string> argv{npipe_bin};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string shown;
  for (auto& a : args) shown += " '" + a + "'";
  auto r = run(argv, {}, 5s); // a usage error is immediate; a server that started is killed at the limit
  EXPECT_EQ(r.exit_code, 2) << shown << ": " << r.err;
  EXPECT_EQ(r.err.rfind("npipe: ", 0), 0u) << shown << ": " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << shown << ": one line: " << r.err;
  EXPECT_TRUE(r.out.empty()) << shown << ": " << r.out;
  if (!name.empty()) EXPECT_FALSE(std::filesystem::exists(socket_of(name))) << shown << ": no server started";
}

TEST_F(Cli, EveryUsageErrorExitsTwoWithOneLine) {
  auto n = random_name("cli");
  for (std::string bad : {"group:abc", "group:", "group:99999999999", "group:4294967296", "group:4294967295",
                          "group:-1", "group:+5", "group:0x10", "nobody", ""})
    expect_usage_error({"serve", n, "--access", bad}, n);
  for (std::string opt : {"--idle-timeout", "--grace", "--handshake-timeout", "--max-queued", "--max-message",
                          "--max-per-user", "--threads", "--max-instances", "--max-connections", "--max-in-flight"})
    for (std::string bad : {"-1", "abc", "1e3", "99999999999999999999999", " 5"}) expect_usage_error({"serve", n, opt, bad}, n);
  expect_usage_error({"serve", n, "--threads", "0"}, n);
  expect_usage_error({"serve", n, "--type", "stream"}, n);
  expect_usage_error({"serve"});
  expect_usage_error({"serve", n, "--listen", "127.0.0.1"}, n);
  expect_usage_error({"serve", n, "--port", "4455"}, n);
  expect_usage_error({"serve", n, "--ca", "ca.pem"}, n);
  expect_usage_error({"serve", n, "--insecure"}, n);
  expect_usage_error({"serve", n, "--remote", "--port", "65536"}, n);
  for (std::string sub : {"send", "call"}) {
    expect_usage_error({sub, n, "x", "--timeout", "-1"});
    expect_usage_error({sub, n, "x", "--timeout", "soon"});
    expect_usage_error({sub, n, "x", "--file", "/etc/hostname"});
    expect_usage_error({sub, n, "x", "y"});
    expect_usage_error({sub});
    expect_usage_error({sub, n, "x", "--no-such-option"});
  }
  expect_usage_error({"bench", n, "--size", "-1"});
  expect_usage_error({"bench", n, "--count", "-5"});
  expect_usage_error({"bench", n, "--seconds", "-1"});
  expect_usage_error({"bench", n, "--seconds", "nan"});
  expect_usage_error({"gateway", "--export", "x", "--idle-timeout", "-1"});
  expect_usage_error({"gateway", "--export", "x", "--port", "-1"});
  expect_usage_error({"list", "extra"});
  expect_usage_error({"no-such-command"});
  expect_usage_error({});
  // --help and --version are not errors.
  EXPECT_EQ(run({npipe_bin, "serve", "--help"}).exit_code, 0);
  EXPECT_EQ(run({npipe_bin, "--version"}).exit_code, 0);
}

TEST_F(Cli, AccessTakesAGroupNameOrAValidGid) {
  for (std::string access : {"group:nogroup", "group:65534"}) {
    auto name = random_name("cli");
    child server([&] {
      quiet();
      ::execl(npipe_bin.c_str(), npipe_bin.c_str(), "serve", "--once", "--access", access.c_str(), name.c_str(),
              nullptr);
      return 127;
    });
    ASSERT_TRUE(wait_for_file(socket_of(name))) << access;
    struct stat st{};
    ASSERT_EQ(::stat(socket_of(name).c_str(), &st), 0);
    EXPECT_EQ(st.st_gid, 65534u) << access << ": the socket file belongs to the group";
    EXPECT_EQ(st.st_mode & 0777, 0660u) << access;
    EXPECT_EQ(run({npipe_bin, "send", name, "x"}).exit_code, 0);
    EXPECT_EQ(server.wait(), 0) << access;
  }
}

TEST_F(Cli, TimeoutsTakeNeverOrAWholeNumber) {
  auto name = random_name("cli");
  child server([&] {
    quiet();
    ::execl(npipe_bin.c_str(), npipe_bin.c_str(), "serve", "--once", "--idle-timeout", "never", "--grace", "0",
            name.c_str(), nullptr);
    return 127;
  });
  ASSERT_TRUE(wait_for_file(socket_of(name)));
  EXPECT_EQ(run({npipe_bin, "send", name, "x"}).exit_code, 0);
  EXPECT_EQ(server.wait(), 0);
}

// ------------------------------------------------------------ squatters and list

// Run the CLI as uid/gid 65534 (nobody); stdout and stderr go to `out`.
int run_as_nobody(const std::vector<std::string>& args, const std::string& out) {
  std::vector<std::string> argv{npipe_bin};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> raw;
  for (auto& a : argv) raw.push_back(a.data());
  raw.push_back(nullptr);
  child c([&] {
    int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) return 126;
    ::execv(raw[0], raw.data());
    return 127;
  });
  return c.wait();
}

// A socket file whose listener has closed, as a crashed server leaves it.
void make_stale_socket(const std::string& path, mode_t mode) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  ::close(fd);
  ::chmod(path.c_str(), mode);
}

TEST_F(Cli, ListTellsLivePipesOthersCannotOpenFromStaleOnes) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the list as another user";
  auto name = random_name("cli");
  child server([&] {
    quiet();
    ::execl(npipe_bin.c_str(), npipe_bin.c_str(), "serve", name.c_str(), nullptr); // default access: root only
    return 127;
  });
  ASSERT_TRUE(wait_for_file(socket_of(name)));
  auto file = std::filesystem::path(socket_of(name)).filename().string();
  make_stale_socket(dir_ + "/stale-one", 0600);
  make_stale_socket(dir_ + "/stale-open", 0666);

  auto mine = run({npipe_bin, "list"});
  EXPECT_EQ(mine.exit_code, 0) << mine.err;
  EXPECT_TRUE(std::regex_search(mine.out, std::regex("(^|\n)live +uid 0 +" + file + "\n"))) << mine.out;
  EXPECT_TRUE(std::regex_search(mine.out, std::regex("(^|\n)stale +uid 0 +stale-one\n"))) << mine.out;

  auto out = dir_ + "/list.out";
  EXPECT_EQ(run_as_nobody({"list"}, out), 0) << slurp(out);
  auto theirs = slurp(out);
  EXPECT_TRUE(std::regex_search(theirs, std::regex("(^|\n)live \\(not accessible to you\\) +uid 0 +" + file + "\n")))
      << theirs;
  EXPECT_TRUE(std::regex_search(theirs, std::regex("(^|\n)stale +uid 0 +stale-one\n"))) << theirs;
  EXPECT_TRUE(std::regex_search(theirs, std::regex("(^|\n)stale +uid 0 +stale-open\n"))) << theirs;
  server.kill(SIGTERM);
  EXPECT_EQ(server.wait(), 0);
}

TEST_F(Cli, ListOfAMissingDirectoryIsAnError) {
  auto r = run({npipe_bin, "list", "--dir", dir_ + "/no-such-dir"});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.err.find("no-such-dir"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << r.err;
}

TEST_F(Cli, ClientsCanRequireTheServersUser) {
  auto name = random_name("cli");
  child server([&] {
    quiet();
    ::execl(npipe_bin.c_str(), npipe_bin.c_str(), "serve", "--echo", "--access", "everyone", name.c_str(), nullptr);
    return 127;
  });
  ASSERT_TRUE(wait_for_file(socket_of(name)));
  std::string me = std::to_string(::geteuid());
  for (std::string sub : {"send", "call"}) {
    auto ok = run({npipe_bin, sub, name, "hi", "--require-server-user", me});
    EXPECT_EQ(ok.exit_code, 0) << sub << ": " << ok.err;
    auto other = run({npipe_bin, sub, name, "secret", "--require-server-user", me == "65534" ? "0" : "65534"});
    EXPECT_EQ(other.exit_code, 1) << sub << ": " << other.out;
    EXPECT_NE(other.err.find("squatter"), std::string::npos) << other.err;
    EXPECT_TRUE(other.out.empty()) << other.out;
  }
  if (::geteuid() == 0) {
    EXPECT_EQ(run({npipe_bin, "send", name, "hi", "--require-server-user", "root"}).exit_code, 0);
    auto by_name = run({npipe_bin, "send", name, "secret", "--require-server-user", "nobody"});
    EXPECT_EQ(by_name.exit_code, 1);
    EXPECT_NE(by_name.err.find("squatter"), std::string::npos) << by_name.err;
  }
  auto b = run({npipe_bin, "bench", name, "--count", "10", "--seconds", "0.05", "--require-server-user",
                me == "65534" ? "0" : "65534"});
  EXPECT_EQ(b.exit_code, 1) << b.out;
  EXPECT_NE(b.err.find("squatter"), std::string::npos) << b.err;
  expect_usage_error({"send", name, "x", "--require-server-user", "no-such-user-here"});
  expect_usage_error({"send", name, "x", "--require-server-user", "4294967295"});
  expect_usage_error({"send", name, "x", "--require-server-user", "-1"});
  server.kill(SIGINT);
  EXPECT_EQ(server.wait(), 0);
}

// ------------------------------------------------------------ messages and timeouts

// The CLI with a standard input that stays open (as a terminal or a quiet
// pipe would), killed after `limit`.
run_result run_with_open_stdin(const std::vector<std::string>& args, std::chrono::milliseconds limit) {
  std::vector<std::string> argv{npipe_bin};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> raw;
  for (auto& a : argv) raw.push_back(a.data());
  raw.push_back(nullptr);
  int in[2];
  EXPECT_EQ(::pipe(in), 0);
  char out_tmpl[] = "/tmp/npipe-cli-out-XXXXXX", err_tmpl[] = "/tmp/npipe-cli-err-XXXXXX";
  int out = ::mkstemp(out_tmpl), err = ::mkstemp(err_tmpl);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::close(in[1]);
    ::execv(raw[0], raw.data());
    ::_exit(127);
  }
  ::close(in[0]);
  run_result r;
  int st = 0;
  auto until = std::chrono::steady_clock::now() + limit;
  while (::waitpid(pid, &st, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > until) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      break;
    }
    std::this_thread::sleep_for(5ms); // kept: polling the child's exit against a deadline
  }
  ::close(in[1]);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = slurp(out_tmpl);
  r.err = slurp(err_tmpl);
  ::close(out);
  ::close(err);
  ::unlink(out_tmpl);
  ::unlink(err_tmpl);
  return r;
}

TEST_F(Cli, AnExplicitEmptyMessageIsSentAndTheNameIsCheckedBeforeStdinIsRead) {
  auto name = random_name("cli");
  child server(echo_server(name));
  ASSERT_TRUE(wait_for_file(socket_of(name)));
  auto e = run_with_open_stdin({"send", name, ""}, 5s);
  EXPECT_EQ(e.exit_code, 0) << e.err;
  EXPECT_EQ(e.out, "Response received: []\n");
  auto c = run_with_open_stdin({"call", name, ""}, 5s);
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, "");
  auto dash = run({npipe_bin, "send", name, "-"}, "via dash");
  EXPECT_EQ(dash.out, "Response received: [via dash]\n") << dash.err;

  auto t0 = std::chrono::steady_clock::now();
  auto bad = run_with_open_stdin({"send", "bad/name"}, 5s);
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("not a pipe name"), std::string::npos) << bad.err;
  auto bad_file = run_with_open_stdin({"send", "bad/name", "--file", dir_ + "/missing"}, 5s);
  EXPECT_NE(bad_file.err.find("not a pipe name"), std::string::npos) << "the name comes first: " << bad_file.err;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s) << "neither waited for standard input";
  server.kill(SIGINT);
  EXPECT_EQ(server.wait(), 0);
}

TEST_F(Cli, CallOnABytePipeReadsWhileItWrites) {
  auto name = random_name("cli");
  child server([&] {
    quiet();
    ::execl(npipe_bin.c_str(), npipe_bin.c_str(), "serve", "--type", "byte", "--echo", "-q", name.c_str(), nullptr);
    return 127;
  });
  ASSERT_TRUE(wait_for_file(socket_of(name)));
  std::string big(8 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) >> 3);
  auto file = dir_ + "/big.bin";
  std::ofstream(file, std::ios::binary).write(big.data(), static_cast<std::streamsize>(big.size()));
  auto r = run({npipe_bin, "call", name, "--file", file, "--timeout", "20000"}, {}, 25s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.size(), big.size());
  EXPECT_TRUE(r.out == big) << "the whole echo, byte for byte";
  // A small echo comes back without waiting out the timeout.
  auto t0 = std::chrono::steady_clock::now();
  auto s = run({npipe_bin, "send", name, "hello", "--timeout", "20000"});
  EXPECT_EQ(s.out, "Response received: [hello]\n") << s.err;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  server.kill(SIGINT);
  EXPECT_EQ(server.wait(), 0);
}

TEST_F(Cli, EveryOperationIsBoundedByTheTimeout) {
  // A server that admits clients and never reads them.
  auto name = npipe::test::random_pipe("cli");
  npipe::server_options so;
  so.type = npipe::pipe_type::byte;
  npipe::server srv(name, so);
  std::atomic<bool> stop{false};
  std::vector<npipe::connection> held;
  std::thread acceptor([&] {
    while (!stop) {
      std::error_code ec;
      auto c = srv.accept(100ms, ec);
      if (!ec) held.push_back(std::move(c));
    }
  });
  auto file = dir_ + "/big.bin";
  std::ofstream(file, std::ios::binary) << std::string(16 << 20, 'x');
  for (std::string sub : {"send", "call"}) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = run({npipe_bin, sub, name.str(), "--file", file, "--timeout", "1000"}, {}, 15s);
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(r.exit_code, 1) << sub << ": " << r.err;
    EXPECT_NE(r.err.find("timed_out"), std::string::npos) << sub << ": " << r.err;
    EXPECT_LT(took, 5s) << sub;
  }
  stop = true;
  acceptor.join();
}

// ------------------------------------------------------------ error messages

TEST_F(Cli, SighupStopsServeAsSigtermDoes) {
  for (int sig : {SIGHUP, SIGTERM}) {
    auto name = random_name("cli");
    child server([&] {
      quiet();
      ::execl(npipe_bin.c_str(), npipe_bin.c_str(), "serve", name.c_str(), nullptr);
      return 127;
    });
    ASSERT_TRUE(wait_for_file(socket_of(name)));
    server.kill(sig);
    EXPECT_EQ(server.wait(), 0) << "signal " << sig;
    EXPECT_FALSE(std::filesystem::exists(socket_of(name))) << "signal " << sig << ": no stale socket left";
  }
}

// A TCP port on 127.0.0.1 held by a listener for the test's duration.
struct taken_port {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  std::uint16_t port = 0;
  taken_port() {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    ::listen(fd, 1);
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
  }
  ~taken_port() { ::close(fd); }
};

TEST_F(Cli, ServeRemoteOnATakenPortFailsBeforeAnnouncingAndSaysWhy) {
  taken_port taken;
  auto name = random_name("cli");
  auto r = run({npipe_bin, "serve", name, "--remote", "--listen", "127.0.0.1", "--port", std::to_string(taken.port),
                "--insecure"},
               {}, 10s);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out.find("Listening on"), std::string::npos) << "nothing announced: " << r.out;
  EXPECT_NE(r.err.find("127.0.0.1:" + std::to_string(taken.port)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Address already in use"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("pipe name"), std::string::npos) << "not about a pipe name: " << r.err;
  EXPECT_FALSE(std::filesystem::exists(socket_of(name))) << "the pipe is gone again";
}

TEST_F(Cli, AMissingPskFileSaysSo) {
  auto psk = dir_ + "/no-such-psk.txt";
  for (std::string sub : {"send", "serve"}) {
    std::vector<std::string> argv = sub == "send"
        ? std::vector<std::string>{npipe_bin, "send", "\\\\127.0.0.1:1\\pipe\\x", "hi", "--psk-file", psk}
        : std::vector<std::string>{npipe_bin, "serve", random_name("cli"), "--remote", "--listen", "127.0.0.1",
                                   "--port", "0", "--psk-file", psk};
    auto r = run(argv, {}, 10s);
    EXPECT_EQ(r.exit_code, 1) << sub << ": " << r.err;
    EXPECT_NE(r.err.find(psk), std::string::npos) << sub << ": " << r.err;
    EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << sub << ": " << r.err;
    EXPECT_EQ(r.err.find("no server"), std::string::npos) << sub << ": " << r.err;
    EXPECT_EQ(r.out.find("Listening on"), std::string::npos) << sub << ": " << r.out;
  }
}

// A `serve --remote` with the test certificates and PSK on a free port.
struct remote_server {
  std::string name = random_name("cli");
  std::uint16_t port = npipe::test::free_tcp_port();
  std::string log;
  std::unique_ptr<child> proc;
  explicit remote_server(const std::string& dir) : log(dir + "/remote.out") {
    auto p = std::to_string(port);
    proc = std::make_unique<child>([this, p] {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::execl(npipe_bin.c_str(), npipe_bin.c_str(), "serve", "--echo", "-q", name.c_str(), "--remote", "--listen",
              "127.0.0.1", "--port", p.c_str(), "--ca", cert("ca.pem").c_str(), "--cert", cert("server.pem").c_str(),
              "--key", cert("server.key").c_str(), "--psk-file", cert("psk.txt").c_str(), nullptr);
      return 127;
    });
  }
  bool ready() {
    return npipe::test::wait_until([&] { return slurp(log).find("Remote access on port") != std::string::npos; }, 10s);
  }
  std::string remote() const { return "\\\\127.0.0.1:" + std::to_string(port) + "\\pipe\\" + name; }
  ~remote_server() {
    proc->kill(SIGTERM);
    proc->wait();
  }
};

TEST_F(Cli, TlsFailuresSayWhichSideRefusedAndWhy) {
  cert_dir(); // made before the server starts
  remote_server srv(dir_);
  ASSERT_TRUE(srv.ready()) << slurp(srv.log);
  auto good = run({npipe_bin, "send", srv.remote(), "hi", "--psk-file", cert("psk.txt")});
  EXPECT_EQ(good.out, "Response received: [hi]\n") << good.err;
  struct failure {
    std::vector<std::string> flags;
    std::vector<std::string> says;
  };
  std::vector<failure> cases = {
      {{"--psk-file", cert("psk-wrong.txt")}, {"refused", "pre-shared key", "npipe-client"}},
      {{"--psk-file", cert("psk-unknown.txt")}, {"stranger", "does not know"}},
      {{"--ca", cert("ca.pem")}, {"refused", "certificate required"}},
      {{"--ca", cert("other/ca.pem")}, {"certificate of the gateway", "failed verification", "not signed by the CA"}},
      {{"--ca", cert("ca.pem"), "--cert", cert("other/client.pem"), "--key", cert("other/client.key")},
       {"refused", "unknown ca"}},
  };
  for (auto& c : cases) {
    std::vector<std::string> argv{npipe_bin, "send", srv.remote(), "hi"};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    auto r = run(argv);
    std::string shown = c.flags[0] + " " + c.flags[1];
    EXPECT_EQ(r.exit_code, 1) << shown << ": " << r.err;
    EXPECT_NE(r.err.find("access_denied"), std::string::npos) << shown << ": " << r.err;
    for (auto& s : c.says) EXPECT_NE(r.err.find(s), std::string::npos) << shown << ": says '" << s << "': " << r.err;
    EXPECT_EQ(r.err.find("access policy or file permissions"), std::string::npos) << shown << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << shown << ": " << r.out;
  }
}

} // namespace
