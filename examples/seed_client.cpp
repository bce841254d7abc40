// SPDX-License-Identifier: MIT
// The seed's NamedPipeClient with npipe: open the pipe in message read
// mode, write a message, read the reply.
#include <npipe/npipe.hpp>

#include <iostream>

int main(int argc, char** argv) try {
  npipe::connection pipe = npipe::connect(npipe::pipe_name(argc > 1 ? argv[1] : "\\\\.\\pipe\\tpipe"));
  std::string reply = pipe.transact(argc > 2 ? argv[2] : "hello from the seed client");
  std::cout << "Response received: [" << reply << "]" << std::endl;
} catch (const std::system_error& e) {
  std::cerr << e.code().value() << " " << e.what() << "\n";
  return 1;
}
