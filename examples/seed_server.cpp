// SPDX-License-Identifier: MIT
// The seed's NamedPipeServer with npipe: create \\.\pipe\tpipe in message
// mode, wait for a client, read one message of any length, reply with the
// version and time, flush, disconnect.
#include <npipe/npipe.hpp>

#include <ctime>
#include <iostream>

int main(int argc, char** argv) try {
  npipe::server srv(npipe::pipe_name(argc > 1 ? argv[1] : "\\\\.\\pipe\\tpipe"));
  npipe::connection client = srv.accept();
  std::vector<std::byte> request = client.receive(); // the ERROR_MORE_DATA loop, done for you
  std::cout << "Bytes received: " << request.size() << std::endl;
  std::time_t now = std::time(nullptr);
  client.write(std::string("npipe ") + npipe::version + " | " + std::ctime(&now));
  client.flush();
  client.close(); // DisconnectNamedPipe
} catch (const std::system_error& e) {
  std::cerr << e.code().value() << " " << e.what() << "\n";
  return 1;
}
