// SPDX-License-Identifier: MIT
// A program built against an installed npipe: one transact over a real pipe.
#include <npipe/npipe.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <unistd.h>

int main() {
  npipe::server_options so;
  char dir[] = "/tmp/npipe-consumer-XXXXXX";
  so.pipe_dir = ::mkdtemp(dir);
  npipe::client_options co;
  co.pipe_dir = so.pipe_dir;
  npipe::pipe_name name("consumer-" + std::to_string(::getpid()));
  npipe::server srv(name, so);
  std::thread t([&] {
    auto c = srv.accept(std::chrono::seconds(10));
    c.write("re: " + c.receive_string());
  });
  auto reply = npipe::call(name, "hi", std::chrono::seconds(10), co);
  t.join();
  srv.close();
  ::rmdir(dir);
  std::printf("consumer: %s\n", reply == "re: hi" ? "ok" : "wrong reply");
  return reply == "re: hi" ? 0 : 1;
}
