// SPDX-License-Identifier: MIT
#include "raw_peer.hpp"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

namespace npipe::test {

namespace {
// Connect a new stream socket of `family` to `sa`, with a 10 s receive timeout; -1 on failure.
int connect_socket(int family, const sockaddr* sa, socklen_t len) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, sa, len) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}
} // namespace

int raw_connect(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  return connect_socket(AF_UNIX, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
}

int raw_tcp_connect(const std::string& ipv4, std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (::inet_pton(AF_INET, ipv4.c_str(), &sa.sin_addr) != 1) return -1;
  return connect_socket(AF_INET, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
}

std::string raw_hello(const pipe_name& name, char version) {
  std::string h = "NPIP";
  h += version;
  h += '\0';
  h += static_cast<char>(name.name().size());
  h += static_cast<char>(name.name().size() >> 8);
  h += std::string(4, '\0');                 // wait_ms
  h += std::string("\x00\x00\x00\x02", 4);  // max_message 32 MiB
  return h + name.name();
}

std::string raw_frame(std::string_view payload) {
  std::string f(1, '\x01');
  auto n = static_cast<std::uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) f += static_cast<char>(n >> (8 * i));
  return f + std::string(payload);
}

int raw_session(const server& s) { return raw_session(s.native_path(), raw_hello(s.name())); }

int raw_session(const std::string& path, const std::string& hello) {
  int fd = raw_connect(path);
  if (fd < 0) return -1;
  ::send(fd, hello.data(), hello.size(), MSG_NOSIGNAL);
  char reply[16];
  if (::recv(fd, reply, 16, MSG_WAITALL) != 16 || reply[5] != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool closed_by_server(int fd) {
  // A server may answer before it closes (a reply saying why): read past it.
  char buf[256];
  std::size_t total = 0;
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    if (n < 0) return false; // the receive timeout: still open
    total += static_cast<std::size_t>(n);
    if (total > 64) return false; // more than an answer: it is talking, not closing
  }
}

} // namespace npipe::test
