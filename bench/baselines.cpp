// SPDX-License-Identifier: MIT
// The servers a user could write instead of npipe, over the same Unix
// stream socket and the same framing as uds-stream (a 4-byte length in host
// order, then the payload), so the raw client talks to each of them:
//   uds-epoll   one thread, non-blocking sockets and epoll: the strongest
//               simple raw server for many clients and for connection rate
//               (no thread is started per connection)
//   asio-uds    hand-written Asio: local::stream_protocol, async_read of the
//               length then the payload, one async_write of both, one thread
//   libuv-pipe  hand-written libuv: uv_pipe_t, reads into 64 KiB buffers,
//               frames cut from what arrived, one uv_write of both
// Each answers as every transport does (transports.hpp).
#include "transports.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(io_context.hpp)
#include NPIPE_NET_HEADER(local/stream_protocol.hpp)
#include NPIPE_NET_HEADER(read.hpp)
#include NPIPE_NET_HEADER(write.hpp)

#include <uv.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <unordered_map>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace bench {
namespace net = npipe::net;
namespace {

[[noreturn]] void die(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

void answer(const std::byte* req, std::size_t n, std::vector<std::byte>& out) {
  if (n > 0 && req[0] == std::byte{'A'}) out.assign(1, std::byte{'k'});
  else out.assign(req, req + n);
}

// Appends one frame (length, payload) to `out`.
void append_frame(std::vector<std::byte>& out, const std::vector<std::byte>& payload) {
  auto len = static_cast<std::uint32_t>(payload.size());
  auto at = out.size();
  out.resize(at + 4 + payload.size());
  std::memcpy(out.data() + at, &len, 4);
  if (!payload.empty()) std::memcpy(out.data() + at + 4, payload.data(), payload.size());
}

// Answers every whole frame in [data, data + n) into `out`; returns the bytes used.
std::size_t answer_frames(const std::byte* data, std::size_t n, std::vector<std::byte>& out,
                          std::vector<std::byte>& scratch) {
  std::size_t used = 0;
  while (n - used >= 4) {
    std::uint32_t len;
    std::memcpy(&len, data + used, 4);
    if (n - used - 4 < len) break;
    answer(data + used + 4, len, scratch);
    append_frame(out, scratch);
    used += 4 + len;
  }
  return used;
}

int listen_unix(const std::string& path, bool nonblocking) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) die("socket");
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) || ::listen(fd, SOMAXCONN)) die("bind " + path);
  return fd;
}

// ------------------------------------------------------------- epoll loop

struct epoll_conn {
  int fd;
  std::vector<std::byte> in;  // bytes read, not yet a whole frame
  std::vector<std::byte> out; // answers not yet written
  std::size_t sent = 0;
  bool want_out = false;
};

void epoll_set(int ep, epoll_conn& c, bool out) {
  if (c.want_out == out) return;
  c.want_out = out;
  epoll_event ev{};
  ev.events = out ? EPOLLOUT : EPOLLIN; // stop reading while answers wait: memory stays bounded
  ev.data.fd = c.fd;
  ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
}

// Writes what is queued; false when the connection is gone.
bool epoll_flush(int ep, epoll_conn& c) {
  while (c.sent < c.out.size()) {
    ssize_t w = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      epoll_set(ep, c, true);
      return true;
    }
    if (w <= 0) return false;
    c.sent += static_cast<std::size_t>(w);
  }
  c.out.clear();
  c.sent = 0;
  epoll_set(ep, c, false);
  return true;
}

// Reads what is there (through the loop's one read buffer, so an idle
// connection holds none) and answers every whole frame; false when the
// connection is gone.
bool epoll_read(int ep, epoll_conn& c, std::vector<std::byte>& rbuf, std::vector<std::byte>& scratch) {
  for (;;) {
    ssize_t r = ::recv(c.fd, rbuf.data(), rbuf.size(), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) break;
    if (r <= 0) return false;
    c.in.insert(c.in.end(), rbuf.data(), rbuf.data() + r);
    if (static_cast<std::size_t>(r) < rbuf.size()) break; // drained for now
  }
  std::size_t used = answer_frames(c.in.data(), c.in.size(), c.out, scratch);
  c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(used));
  return c.out.empty() || epoll_flush(ep, c);
}

void serve_epoll(const std::string& path) {
  int l = listen_unix(path, true);
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = l;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
  std::unordered_map<int, epoll_conn> conns;
  std::vector<std::byte> scratch, rbuf(256u << 10);
  std::array<epoll_event, 64> events;
  for (;;) {
    int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == l) {
        for (int c; (c = ::accept4(l, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
          conns.emplace(c, epoll_conn{c, {}, {}, 0, false});
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      epoll_conn& c = it->second;
      bool alive = c.want_out ? epoll_flush(ep, c) && (c.want_out || epoll_read(ep, c, rbuf, scratch))
                              : epoll_read(ep, c, rbuf, scratch);
      if (!alive) {
        ::close(fd); // also leaves the epoll set
        conns.erase(it);
      }
    }
  }
}

// ----------------------------------------------------------- Asio server

using net::local::stream_protocol;

class asio_session : public std::enable_shared_from_this<asio_session> {
public:
  explicit asio_session(stream_protocol::socket s) : s_(std::move(s)) {}
  void read_length() {
    net::async_read(s_, net::buffer(&len_, 4), [self = shared_from_this()](std::error_code ec, std::size_t) {
      if (!ec) self->read_payload();
    });
  }

private:
  void read_payload() {
    in_.resize(len_);
    net::async_read(s_, net::buffer(in_), [self = shared_from_this()](std::error_code ec, std::size_t) {
      if (!ec) self->write_answer();
    });
  }
  void write_answer() {
    answer(in_.data(), in_.size(), out_);
    out_len_ = static_cast<std::uint32_t>(out_.size());
    std::array<net::const_buffer, 2> bufs{net::buffer(&out_len_, 4), net::buffer(out_)};
    net::async_write(s_, bufs, [self = shared_from_this()](std::error_code ec, std::size_t) {
      if (!ec) self->read_length();
    });
  }

  stream_protocol::socket s_;
  std::uint32_t len_ = 0, out_len_ = 0;
  std::vector<std::byte> in_, out_;
};

void accept_next(stream_protocol::acceptor& a) {
  a.async_accept([&a](std::error_code ec, stream_protocol::socket s) {
    if (!ec) std::make_shared<asio_session>(std::move(s))->read_length();
    accept_next(a);
  });
}

void serve_asio(const std::string& path) {
  ::unlink(path.c_str());
  net::io_context ctx(1);
  stream_protocol::acceptor a(ctx, stream_protocol::endpoint(path));
  accept_next(a);
  ctx.run();
}

// ---------------------------------------------------------- libuv server

struct uv_conn {
  uv_pipe_t pipe;
  std::vector<std::byte> in;
  std::vector<std::byte> scratch;
};

struct uv_write_job {
  uv_write_t req;
  std::vector<std::byte> data;
};

constexpr std::size_t uv_queue_limit = 1u << 20; // answers queued for a client before it stops being read

void uv_conn_close(uv_conn* c) {
  uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe), [](uv_handle_t* h) { delete static_cast<uv_conn*>(h->data); });
}

void uv_alloc(uv_handle_t*, std::size_t, uv_buf_t* b) { *b = uv_buf_init(new char[64u << 10], 64u << 10); }
void uv_on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);

void uv_on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<uv_conn*>(s->data);
  if (n == UV_EOF) { // answer what was asked first: shut down after the queued writes, then close
    delete[] buf->base;
    auto* req = new uv_shutdown_t;
    if (uv_shutdown(req, s, [](uv_shutdown_t* r, int) {
          uv_conn_close(static_cast<uv_conn*>(r->handle->data));
          delete r;
        }) != 0) {
      delete req;
      uv_conn_close(c);
    }
    return;
  }
  if (n < 0) {
    delete[] buf->base;
    uv_conn_close(c);
    return;
  }
  c->in.insert(c->in.end(), reinterpret_cast<std::byte*>(buf->base), reinterpret_cast<std::byte*>(buf->base) + n);
  delete[] buf->base;
  auto* job = new uv_write_job;
  std::size_t used = answer_frames(c->in.data(), c->in.size(), job->data, c->scratch);
  c->in.erase(c->in.begin(), c->in.begin() + static_cast<std::ptrdiff_t>(used));
  if (job->data.empty()) {
    delete job;
    return;
  }
  uv_buf_t out = uv_buf_init(reinterpret_cast<char*>(job->data.data()), static_cast<unsigned>(job->data.size()));
  int rc = uv_write(&job->req, s, &out, 1, [](uv_write_t* req, int status) {
    uv_stream_t* stream = req->handle;
    delete reinterpret_cast<uv_write_job*>(req);
    // The client caught up: read it again.
    if (status == 0 && stream->write_queue_size == 0 && !uv_is_closing(reinterpret_cast<uv_handle_t*>(stream)))
      uv_read_start(stream, uv_alloc, uv_on_read);
  });
  if (rc != 0) {
    delete job;
    uv_conn_close(c);
    return;
  }
  if (s->write_queue_size > uv_queue_limit) uv_read_stop(s); // backpressure: stop reading a client that does not read
}

void uv_on_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* c = new uv_conn;
  uv_pipe_init(server->loop, &c->pipe, 0);
  c->pipe.data = c;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->pipe)) != 0) {
    uv_conn_close(c);
    return;
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->pipe), uv_alloc, uv_on_read);
}

void serve_uv(const std::string& path) {
  ::unlink(path.c_str());
  uv_loop_t* loop = uv_default_loop();
  uv_pipe_t server;
  uv_pipe_init(loop, &server, 0);
  if (int rc = uv_pipe_bind(&server, path.c_str()); rc != 0)
    throw std::runtime_error("uv_pipe_bind " + path + ": " + uv_strerror(rc));
  if (int rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server), SOMAXCONN, uv_on_connection); rc != 0)
    throw std::runtime_error(std::string("uv_listen: ") + uv_strerror(rc));
  uv_run(loop, UV_RUN_DEFAULT);
}

} // namespace

void serve_uds_epoll(const std::string& path) { serve_epoll(path); }
void serve_asio_uds(const std::string& path) { serve_asio(path); }
void serve_libuv_pipe(const std::string& path) { serve_uv(path); }

} // namespace bench
