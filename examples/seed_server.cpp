// SPDX-License-Identifier: MIT
// The seed's NamedPipeServer with npipe: create \\.\pipe\tpipe in message
// mode, wait for a client, read one message of any length, reply with the
// version and time, flush, disconnect.
#include <npipe/npipe.hpp>

#include <chrono>
#include <ctime>
#include <iostream>
#include <string>

// The local time as `npipe serve` writes it: YYYY-MM-DD HH:MM:SS. Not
// ctime(), whose text ends in a newline that would end up in the reply.
static std::string now_text() {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
#ifdef _WIN32
  localtime_s(&tm, &t);
#else
  localtime_r(&t, &tm);
#endif
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

int main(int argc, char** argv) try {
  npipe::server srv(npipe::pipe_name(argc > 1 ? argv[1] : "\\\\.\\pipe\\tpipe"));
  npipe::connection client = srv.accept();
  std::vector<std::byte> request = client.receive(); // the ERROR_MORE_DATA loop, done for you
  std::cout << "Bytes received: " << request.size() << std::endl;
  client.write(std::string("npipe ") + npipe::version + " | " + now_text());
  client.flush();
  client.close(); // DisconnectNamedPipe
} catch (const std::system_error& e) {
  std::cerr << e.code().value() << " " << e.what() << "\n";
  return 1;
}
