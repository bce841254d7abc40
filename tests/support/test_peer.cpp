// SPDX-License-Identifier: MIT
// A peer process for the tests whose other end must be a separate process
// that can be killed (tests/integration/process_test.cpp). Written against
// the public blocking API only; Linux and Windows.
//
//   npipe_test_peer hold NAME    connect, send "hello", then wait to be killed
//   npipe_test_peer hang NAME    serve NAME: take one client's request, never answer
//   npipe_test_peer echo NAME    serve NAME: echo every message of one client, then exit
//   npipe_test_peer big NAME N   connect, send one message of N bytes, then wait to be killed

#include <npipe/npipe.hpp>

#include <chrono>
#include <cstdio>
#include <string_view>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1)); // until killed
}

int usage() {
  std::fputs("usage: npipe_test_peer hold|hang|echo NAME, or big NAME BYTES\n", stderr);
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  std::string_view mode = argv[1];
  npipe::pipe_name name(argv[2]);
  try {
    if (mode == "hold") {
      auto c = npipe::connect(name, {}, std::chrono::seconds(20));
      c.write(std::string_view("hello"));
      forever();
    }
    if (mode == "big" && argc == 4) {
      auto c = npipe::connect(name, {}, std::chrono::seconds(20));
      std::vector<std::byte> m(std::stoull(argv[3]), std::byte{'m'});
      c.write(m);
      forever();
    }
    if (mode == "hang" || mode == "echo") {
      npipe::server srv(name);
      auto c = srv.accept(std::chrono::seconds(30));
      if (mode == "hang") {
        c.receive();
        forever();
      }
      for (;;) {
        std::error_code ec;
        auto m = c.receive(ec);
        if (ec) return 0;
        c.write(m);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "npipe_test_peer %s: %s\n", argv[1], e.what());
    return 1;
  }
  return usage();
}
