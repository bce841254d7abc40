// SPDX-License-Identifier: MIT
// The seed demo through the built `npipe` binary: serve and send as separate
// processes, as a user would run them.

#include "test_support.hpp"

#include <csignal>
#include <filesystem>
#include <fcntl.h>
#include <future>
#include <regex>
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
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (std::filesystem::exists(path)) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

std::string socket_of(const std::string& name) {
  std::error_code ec;
  return npipe::local_path(npipe::pipe_name(name), ec);
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
  child server([&] {
    quiet();
    ::execl(npipe_bin.c_str(), npipe_bin.c_str(), "serve", "--echo", name.c_str(), nullptr);
    return 127;
  });
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
  EXPECT_EQ(idle[0].transact(std::string_view("hi")).substr(0, 6), "npipe ");
  std::this_thread::sleep_for(100ms);
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

} // namespace
