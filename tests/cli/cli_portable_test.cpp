// SPDX-License-Identifier: MIT
// The CLI as a user runs it, written once for Linux and Windows (npipe.exe
// under Wine): separate processes, random names, exit codes and output.

#include "test_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <regex>
#include <thread>

using namespace std::chrono_literals;
using namespace npipe::test;

namespace {

const std::string cli = NPIPE_CLI_PATH;

using CliEverywhere = local_test;

// Windows consoles write text with CRLF; compare lines as LF.
std::string lf(std::string s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (!(s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n')) out += s[i];
  return out;
}

// Run a client command until the server it talks to exists (at most ~10 s).
run_result run_when_served(const std::vector<std::string>& argv) {
  run_result r;
  for (int i = 0; i < 100; ++i) {
    r = run(argv);
    if (r.exit_code == 0 || r.err.find("not_found") == std::string::npos) return r;
    std::this_thread::sleep_for(100ms); // kept: polling until the server process serves the name
  }
  return r;
}

TEST_F(CliEverywhere, SeedDemoServeOnceAndSend) {
  auto name = "\\\\.\\pipe\\" + random_name("clip");
  auto server = std::async(std::launch::async, [&] { return run({cli, "serve", "--once", name}); });
  auto client = run_when_served({cli, "send", name, "some text"});
  EXPECT_EQ(client.exit_code, 0) << client.err;
  EXPECT_TRUE(std::regex_search(lf(client.out), std::regex(R"(^Response received: \[npipe \d+\.\d+\.\d+ \| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]\n$)")))
      << client.out;
  auto s = server.get();
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_NE(lf(s.out).find("Bytes received: 9\n"), std::string::npos) << s.out;
}

TEST_F(CliEverywhere, CallWritesTheRawReplyByteForByte) {
  // Every byte value, CR and LF and ^Z included: a text-mode stdout would change them.
  std::string data;
  for (int i = 0; i < 100'000; ++i) data += static_cast<char>((i * 7 + i / 256) & 0xff);
  auto file = std::filesystem::temp_directory_path() / (random_name("clip") + ".bin");
  std::ofstream(file, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
  auto name = random_name("clip");
  auto server = std::async(std::launch::async, [&] { return run({cli, "serve", "--once", "--echo", "-q", name}); });
  auto r = run_when_served({cli, "call", name, "--file", file.string()});
  std::filesystem::remove(file);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.size(), data.size());
  EXPECT_TRUE(r.out == data) << "call writes the reply exactly";
  EXPECT_EQ(server.get().exit_code, 0);
}

TEST_F(CliEverywhere, SendToAMissingPipeFailsWithCodeAndMessage) {
  auto r = run({cli, "send", random_name("clip"), "x", "--timeout", "500"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("error 1 (not_found)"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(CliEverywhere, BadNamesAndUsageAreExitCode2) {
  auto r = run({cli, "send", "\\\\.\\pipe\\a\\b", "x"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("is not a pipe name"), std::string::npos) << r.err;
  r = run({cli, "no-such-command"});
  EXPECT_NE(r.exit_code, 0);
}

TEST_F(CliEverywhere, UsageErrorsExitTwoWithOneLineAndHelpIsNotAnError) {
  auto n = random_name("clip");
  std::vector<std::vector<std::string>> cases = {
      {"no-such-command"}, {}, {"send"}, {"send", n, "x", "--timeout", "-1"}, {"call", n, "x", "--file", "f.bin"},
      {"send", n, "x", "--nope"}, {"serve", n, "--grace", "-1"}, {"serve", n, "--idle-timeout", "-1"},
      {"serve", n, "--max-queued", "-1"}, {"serve", n, "--threads", "0"}, {"bench", n, "--size", "-1"},
      {"bench", n, "--seconds", "-1"}};
  for (auto& args : cases) {
    std::vector<std::string> argv{cli};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv, {}, 10s);
    std::string err = lf(r.err), shown;
    for (auto& a : args) shown += " " + a;
    EXPECT_EQ(r.exit_code, 2) << shown << ": " << err;
    EXPECT_EQ(err.rfind("npipe: ", 0), 0u) << shown << ": " << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << shown << ": " << err;
  }
  EXPECT_EQ(run({cli, "--version"}).exit_code, 0);
  EXPECT_EQ(run({cli, "send", "--help"}).exit_code, 0);
}

TEST_F(CliEverywhere, CallOnABytePipeWithALargeMessageEchoesItAll) {
  std::string data;
  for (int i = 0; i < (4 << 20); ++i) data += static_cast<char>((i * 131) >> 3);
  auto file = std::filesystem::temp_directory_path() / (random_name("clip") + ".bin");
  std::ofstream(file, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
  auto name = random_name("clip");
  process server({cli, "serve", "--type", "byte", "--echo", "-q", name});
  auto small = run_when_served({cli, "send", name, "hi"});
  EXPECT_EQ(lf(small.out), "Response received: [hi]\n") << small.err;
  auto r = run({cli, "call", name, "--file", file.string(), "--timeout", "30000"}, {}, 60s);
  std::filesystem::remove(file);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.size(), data.size());
  EXPECT_TRUE(r.out == data) << "the whole echo, byte for byte";
  server.kill();
  server.wait();
}

TEST_F(CliEverywhere, HelpOnEverySubcommand) {
  for (const char* sub : {"serve", "send", "call", "list", "bench"}) {
    auto r = run({cli, sub, "--help"});
    EXPECT_EQ(r.exit_code, 0) << sub << ": " << r.err;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub << ": " << r.out;
  }
}

} // namespace
