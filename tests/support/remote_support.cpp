// SPDX-License-Identifier: MIT
#include "remote_support.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <filesystem>
#include <mutex>

namespace npipe::test {

namespace {
std::string made_dir;
void remove_certs() {
  std::error_code ec;
  if (!made_dir.empty()) std::filesystem::remove_all(made_dir, ec);
}
} // namespace

const std::string& cert_dir() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Under CTest the fixture test_certs.make has made them once for the run.
    if (const char* given = std::getenv("NPIPE_TEST_CERT_DIR"); given && *given) {
      if (!std::filesystem::exists(std::filesystem::path(given) / "ca.pem"))
        throw std::runtime_error(std::string("NPIPE_TEST_CERT_DIR=") + given + " holds no certificates");
      made_dir = given; // not ours: the fixture's cleanup removes it
      return;
    }
    char tmpl[] = "/tmp/npipe-certs-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (!d) throw std::runtime_error("cannot make a directory for test certificates");
    made_dir = d;
    std::atexit(remove_certs);
    std::string cmd = std::string("'") + NPIPE_SOURCE_DIR + "/tests/support/make_test_certs.sh' '" + made_dir + "'";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("making test certificates failed: " + cmd);
  });
  return made_dir;
}

std::string cert(const std::string& file) { return cert_dir() + "/" + file; }

tls_options client_certs() {
  tls_options t;
  t.ca_file = cert("ca.pem");
  t.cert_file = cert("client.pem");
  t.key_file = cert("client.key");
  return t;
}

tls_options client_psk() {
  tls_options t;
  t.psk = load_psk_file(cert("psk.txt"));
  return t;
}

tls_options gateway_certs_and_psk() {
  tls_options t;
  t.ca_file = cert("ca.pem");
  t.cert_file = cert("server.pem");
  t.key_file = cert("server.key");
  t.psk = load_psk_file(cert("psk.txt"));
  return t;
}

std::uint16_t free_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

gateway_options loopback_gateway(const tls_options& tls) {
  gateway_options g;
  g.exports = {"*"};
  g.listen = {"127.0.0.1"};
  g.port = 0;
  g.tls = tls;
  return g;
}

pipe_name remote_name(const std::string& host, std::uint16_t port, const pipe_name& local) {
  bool v6 = host.find(':') != std::string::npos;
  return pipe_name("\\\\" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "\\pipe\\" + local.name());
}

} // namespace npipe::test
