// SPDX-License-Identifier: MIT
// A program built against npipe as a user builds it (installed, through
// pkg-config, or as a subdirectory): one blocking call and one async transact
// over real pipes. It spells its Asio context the deprecated way
// (asio::io_service): npipe builds itself with ASIO_NO_DEPRECATED, and that
// choice must not leak into the programs that use it.
#include <npipe/npipe.hpp>
#if !defined(NPIPE_SHARED) // the async API needs the static library (npipe/async.hpp says why)
#include <npipe/async.hpp>

#include <asio/io_service.hpp>
#endif

#include <chrono>
#include <cstdio>
#include <future>
#include <string>
#include <thread>
#include <unistd.h>

#if defined(ASIO_NO_DEPRECATED) && !defined(NPIPE_SHARED)
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

  // An error thrown inside npipe is caught here and compares equal to its
  // condition: the error category is one object, whichever library it is.
  bool caught = false;
  try {
    npipe::connect(npipe::pipe_name("consumer-nobody-" + std::to_string(::getpid())), co, npipe::no_wait);
  } catch (const std::system_error& e) {
    caught = e.code() == npipe::errc::not_found;
  }
  if (!caught) reply += " (no not_found from a missing pipe)";

#if defined(NPIPE_SHARED)
  std::string areply = "async re: hi"; // the shared library has no async API
#else
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
#endif
  ::rmdir(dir);

  bool ok = reply == "re: hi" && areply == "async re: hi";
  std::printf("consumer: %s\n", ok ? "ok" : ("wrong replies: [" + reply + "] [" + areply + "]").c_str());
  return ok ? 0 : 1;
}
