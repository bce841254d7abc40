// SPDX-License-Identifier: MIT
// The blocking client for remote pipes: TCP to HOST's gateway, TLS 1.3 (or
// plaintext when asked), then npipe's handshake and framing as on a local pipe.

#include "remote/remote.hpp"
#include "remote/tls.hpp"
#include "transport/framed_connection.hpp"
#include "transport/local_posix.hpp"
#include "transport/posix_util.hpp"

#include <npipe/remote.hpp>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>

namespace npipe::detail {

std::string endpoint_text(const std::string& host, std::uint16_t port) {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

void tune_tcp(int fd) noexcept {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  int idle = 30, interval = 10, count = 3; // a vanished host is noticed within about a minute
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

namespace {

struct addrinfo_deleter {
  void operator()(addrinfo* a) const noexcept { ::freeaddrinfo(a); }
};

// A connected, non-blocking TCP socket to one of host's addresses, or -1.
int dial(const std::string& host, std::uint16_t port, deadline dl, const std::string& where, std::error_code& ec) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  addrinfo* raw = nullptr;
  std::string service = std::to_string(port);
  int g = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &raw);
  std::unique_ptr<addrinfo, addrinfo_deleter> list(raw);
  if (g != 0) {
    set_error_detail("cannot resolve " + host + ": " + ::gai_strerror(g));
    ec = make_error_code(errc::not_found);
    return -1;
  }
  int last = ECONNREFUSED;
  for (addrinfo* a = list.get(); a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last = errno;
      continue;
    }
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) return fd;
    if (errno == EINPROGRESS) {
      std::error_code wec;
      if (!wait_fd(fd, POLLOUT, dl, wec)) {
        ::close(fd);
        if (wec) {
          ec = wec;
          return -1;
        }
        set_error_detail("no TCP connection to " + where + " within the deadline");
        ec = make_error_code(errc::timed_out);
        return -1;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0) return fd;
      last = err;
    } else {
      last = errno;
    }
    ::close(fd);
  }
  if (last == ECONNREFUSED) {
    set_error_detail("nothing listens on " + where + " (is an npipe gateway running there, on this port?)");
    ec = make_error_code(errc::not_found, last);
  } else {
    set_error_detail("cannot reach " + where + ": " + std::strerror(last));
    ec = errno_error(last);
  }
  return -1;
}

} // namespace

std::unique_ptr<connection_impl> connect_remote(const pipe_name& name, const client_options& opts, deadline dl,
                                                std::error_code& ec, std::span<const std::byte> first) {
  if (!tls::check_options(tls::role::client, opts.tls, ec)) return nullptr;
  std::uint16_t port = name.port() ? name.port() : default_remote_port;
  std::string where = endpoint_text(name.host(), port);
  std::shared_ptr<tls::context> ctx;
  if (!opts.tls.insecure) {
    ctx = tls::context::make(tls::role::client, opts.tls, ec);
    if (!ctx) return nullptr;
  }
  // The caller's timeout is how long to wait for a free instance (as
  // WaitNamedPipe's); setting up the link gets at least handshake_slack on
  // top, and a bounded time when the caller waits forever.
  deadline net = dl.never() ? deadline::after(defaults::handshake_timeout)
                            : deadline{std::max(dl.at, clock::now() + handshake_slack)};
  // A gateway flooded with connections still authenticating lets some go
  // and says so (status overloaded): a client that may wait tries again.
  auto pause = std::chrono::milliseconds(1);
  const bool may_wait = dl.never() || dl.remaining() > timeout::zero();
  for (;;) {
    int fd = dial(name.host(), port, net, where, ec);
    if (fd < 0) return nullptr;
    tune_tcp(fd);

    peer_identity server{-1, -1, -1, "insecure", where, {}};
    std::unique_ptr<byte_stream> stream;
    bool overloaded = false;
    if (ctx) {
      SSL* ssl = tls::new_client_session(*ctx, name.host(), ec);
      if (!ssl) {
        ::close(fd);
        return nullptr;
      }
      auto t = std::make_unique<tls::tls_stream>(fd, ssl, "the gateway at " + where);
      // A gateway that never answers must not hold a client without a deadline forever.
      if (t->handshake(net, ec)) {
        if (!tls::peer_identity_of(t->native(), *ctx, server.user, ec)) return nullptr;
        stream = std::move(t);
      } else {
        overloaded = tls::plaintext_answer(t->native()) == protocol::status::overloaded;
      }
    } else {
      stream = std::make_unique<fd_stream>(fd, /*local_peer=*/false);
    }
    if (stream) {
      connection_params p;
      if (client_handshake(*stream, name, opts, dl, first, std::move(server), where, p, ec, &overloaded))
        return std::make_unique<framed_connection>(std::move(stream), std::move(p));
    }
    if (!overloaded || !may_wait || clock::now() + pause >= net.at) return nullptr;
    stream.reset();
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(16));
    ec.clear();
  }
}

} // namespace npipe::detail
