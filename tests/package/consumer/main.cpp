// SPDX-License-Identifier: MIT
// A program built against npipe as a user builds it (installed, through
// pkg-config, or as a subdirectory): one blocking call and one async transact
// over real pipes. It spells its Asio context the deprecated way
// (asio::io_service): npipe builds itself with ASIO_NO_DEPRECATED, and that
// choice must not leak into the programs that use it.
#include <npipe/async.hpp>
#include <npipe/npipe.hpp>

#include <asio/io_service.hpp>

#include <chrono>
#include <cstdio>
#include <future>
#include <string>
#include <thread>
#include <unistd.h>

#ifdef ASIO_NO_DEPRECATED
#error "npipe imposed ASIO_NO_DEPRECATED on a program that uses it"
#endif

int main() {
  npipe::server_options so;
  char dir[] = "/tmp/npipe-consumer-XXXXXX";
  so.pipe_dir = ::mkdtemp(dir);
  npipe::client_options co;
  co.pipe_dir = so.pipe_dir;

  // Blocking: a server thread, npipe::call.
  npipe::pipe_name name("consumer-" + std::to_string(::getpid()));
  npipe::server srv(name, so);
  std::thread t([&] {
    auto c = srv.accept(std::chrono::seconds(10));
    c.write("re: " + c.receive_string());
  });
  auto reply = npipe::call(name, "hi", std::chrono::seconds(10), co);
  t.join();
  srv.close();

  // Async, on an asio::io_service.
  asio::io_service io;
  npipe::pipe_name async_name("consumer-async-" + std::to_string(::getpid()));
  npipe::async_server asrv(io, async_name, so);
  asrv.serve([](npipe::request r) { return "async re: " + std::string(r.text()); });
  std::thread runner([&] { io.run(); });
  npipe::async_connection ac(io);
  std::promise<std::string> got;
  auto async_reply = got.get_future();
  ac.async_connect(async_name, co, std::chrono::seconds(10), [&](std::error_code ec) {
    if (ec) return got.set_value("connect: " + ec.message());
    ac.async_transact(asio::buffer(std::string_view("hi")), std::chrono::seconds(10),
                      [&](std::error_code ec2, std::vector<std::byte> r) {
                        got.set_value(ec2 ? "transact: " + ec2.message()
                                          : std::string(reinterpret_cast<const char*>(r.data()), r.size()));
                      });
  });
  auto areply = async_reply.get();
  asio::post(io, [&] { ac.close(); });
  asrv.stop(std::chrono::seconds(5)); // the open server is io's work: run() returns after this
  runner.join();
  ::rmdir(dir);

  bool ok = reply == "re: hi" && areply == "async re: hi";
  std::printf("consumer: %s\n", ok ? "ok" : ("wrong replies: [" + reply + "] [" + areply + "]").c_str());
  return ok ? 0 : 1;
}
