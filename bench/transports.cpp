// SPDX-License-Identifier: MIT
#include "transports.hpp"

#include <npipe/async.hpp>
#include <npipe/npipe.hpp>
#include <npipe/remote.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(io_context.hpp)

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <zmq.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <random>
#include <stdexcept>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

namespace bench {
namespace net = npipe::net;
namespace {

[[noreturn]] void die(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

bool answer(std::span<const std::byte> req, std::vector<std::byte>& out) {
  if (!req.empty() && req[0] == std::byte{'A'}) out.assign(1, std::byte{'k'});
  else out.assign(req.begin(), req.end());
  return true;
}

// ------------------------------------------------------------ raw sockets

bool read_all(int fd, void* p, std::size_t n) {
  auto* b = static_cast<char*>(p);
  while (n) {
    ssize_t r = ::read(fd, b, n);
    if (r <= 0) return false;
    b += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

bool write_frame(int fd, std::span<const std::byte> data) {
  std::uint32_t len = static_cast<std::uint32_t>(data.size());
  iovec iov[2] = {{&len, 4}, {const_cast<std::byte*>(data.data()), data.size()}};
  std::size_t total = 4 + data.size();
  while (total) {
    ssize_t w = ::writev(fd, iov, 2);
    if (w <= 0) return false;
    total -= static_cast<std::size_t>(w);
    std::size_t n = static_cast<std::size_t>(w);
    for (auto& v : iov) {
      std::size_t k = std::min(n, v.iov_len);
      v.iov_base = static_cast<char*>(v.iov_base) + k;
      v.iov_len -= k;
      n -= k;
    }
  }
  return true;
}

bool read_frame(int fd, std::vector<std::byte>& out) {
  std::uint32_t len;
  if (!read_all(fd, &len, 4)) return false;
  out.resize(len);
  return read_all(fd, out.data(), len);
}

int unix_socket(int type, const std::string& path, bool listen_side) {
  int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  if (type == SOCK_SEQPACKET) {
    int big = 8 << 20; // room for 1 MiB records
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
  }
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  if (listen_side) {
    ::unlink(path.c_str());
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) || ::listen(fd, SOMAXCONN)) die("bind " + path);
  } else if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa)) {
    die("connect " + path);
  }
  return fd;
}

void serve_stream(const std::string& path) {
  int l = unix_socket(SOCK_STREAM, path, true);
  for (;;) {
    int fd = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::thread([fd] {
      std::vector<std::byte> in, out;
      while (read_frame(fd, in) && answer(in, out) && write_frame(fd, out)) {
      }
      ::close(fd);
    }).detach();
  }
}

class stream_client final : public client {
public:
  explicit stream_client(const std::string& path) : fd_(unix_socket(SOCK_STREAM, path, false)) {}
  ~stream_client() override { ::close(fd_); }
  void request(std::span<const std::byte> req, std::vector<std::byte>& reply) override {
    if (!write_frame(fd_, req) || !read_frame(fd_, reply)) die("uds stream");
  }

private:
  int fd_;
};

void serve_seqpacket(const std::string& path) {
  int l = unix_socket(SOCK_SEQPACKET, path, true);
  for (;;) {
    int fd = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::thread([fd] {
      std::vector<std::byte> in(2 << 20), out;
      for (;;) {
        ssize_t n = ::recv(fd, in.data(), in.size(), 0);
        if (n <= 0) break;
        answer(std::span(in.data(), static_cast<std::size_t>(n)), out);
        if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) < 0) break;
      }
      ::close(fd);
    }).detach();
  }
}

class seqpacket_client final : public client {
public:
  explicit seqpacket_client(const std::string& path) : fd_(unix_socket(SOCK_SEQPACKET, path, false)) {}
  ~seqpacket_client() override { ::close(fd_); }
  void request(std::span<const std::byte> req, std::vector<std::byte>& reply) override {
    if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) < 0) die("seqpacket send");
    reply.resize(2 << 20);
    ssize_t n = ::recv(fd_, reply.data(), reply.size(), 0);
    if (n < 0) die("seqpacket recv");
    reply.resize(static_cast<std::size_t>(n));
  }

private:
  int fd_;
};

// ------------------------------------------------------------------ npipe

npipe::server_options npipe_opts(const std::string& addr, npipe::pipe_type t) {
  npipe::server_options o;
  o.type = t;
  o.pipe_dir = addr.substr(0, addr.rfind('/'));
  return o;
}
npipe::pipe_name npipe_name(const std::string& addr) { return npipe::pipe_name(addr.substr(addr.rfind('/') + 1)); }

void serve_npipe_blocking(const npipe::pipe_name& name, const npipe::server_options& o) {
  npipe::server srv(name, o);
  for (;;) {
    auto c = srv.accept();
    std::thread([c = std::move(c)]() mutable {
      std::vector<std::byte> out;
      std::error_code ec;
      for (;;) {
        auto in = c.receive(ec);
        if (ec) break;
        answer(in, out);
        c.write(out, ec);
        if (ec) break;
      }
    }).detach();
  }
}

void serve_npipe_message(const std::string& addr) {
  serve_npipe_blocking(npipe_name(addr), npipe_opts(addr, npipe::pipe_type::message));
}

// The same service on the async runtime (serve() with a function handler,
// two threads); clients are the same blocking npipe clients.
// async_server::serve() on `threads` threads running one io_context.
void serve_npipe_async_on(const std::string& addr, int threads) {
  net::io_context ctx(threads);
  auto work = net::make_work_guard(ctx);
  npipe::async_server srv(ctx, npipe_name(addr), npipe_opts(addr, npipe::pipe_type::message));
  srv.serve([](npipe::request r) {
    std::vector<std::byte> out;
    answer(r.data(), out);
    return out;
  });
  std::vector<std::thread> more;
  for (int i = 1; i < threads; ++i) more.emplace_back([&] { ctx.run(); });
  ctx.run();
  for (auto& t : more) t.join();
}

void serve_npipe_async(const std::string& addr) { serve_npipe_async_on(addr, 2); }
// One thread, as the hand-written Asio and libuv servers have.
void serve_npipe_async_1t(const std::string& addr) { serve_npipe_async_on(addr, 1); }

class npipe_client final : public client {
public:
  explicit npipe_client(const std::string& addr) {
    npipe::client_options o;
    o.pipe_dir = addr.substr(0, addr.rfind('/'));
    c_ = npipe::connect(npipe_name(addr), o);
  }
  void request(std::span<const std::byte> req, std::vector<std::byte>& reply) override { reply = c_.transact(req); }

private:
  npipe::connection c_;
};

void npipe_call(const std::string& addr, std::span<const std::byte> req, std::vector<std::byte>& reply) {
  npipe::client_options o;
  o.pipe_dir = addr.substr(0, addr.rfind('/'));
  std::error_code ec;
  reply = npipe::call(npipe_name(addr), req, std::chrono::seconds(10), ec, o);
  if (ec) throw std::system_error(ec, "npipe::call");
}

// Byte pipes carry a stream: the same 4-byte length framing as raw UDS.
bool npipe_read_all(npipe::connection& c, std::byte* p, std::size_t n) {
  while (n) {
    std::error_code ec;
    auto r = c.read(std::span(p, n), ec);
    if (ec) return false;
    p += r.bytes;
    n -= r.bytes;
  }
  return true;
}
bool npipe_read_frame(npipe::connection& c, std::vector<std::byte>& out) {
  std::uint32_t len;
  if (!npipe_read_all(c, reinterpret_cast<std::byte*>(&len), 4)) return false;
  out.resize(len);
  return npipe_read_all(c, out.data(), len);
}
bool npipe_write_frame(npipe::connection& c, std::span<const std::byte> data) {
  std::vector<std::byte> buf(4 + data.size());
  std::uint32_t len = static_cast<std::uint32_t>(data.size());
  std::memcpy(buf.data(), &len, 4);
  std::memcpy(buf.data() + 4, data.data(), data.size());
  std::error_code ec;
  c.write(buf, ec);
  return !ec;
}

void serve_npipe_byte(const std::string& addr) {
  npipe::server srv(npipe_name(addr), npipe_opts(addr, npipe::pipe_type::byte));
  for (;;) {
    auto c = srv.accept();
    std::thread([c = std::move(c)]() mutable {
      std::vector<std::byte> in, out;
      while (npipe_read_frame(c, in) && answer(in, out) && npipe_write_frame(c, out)) {
      }
    }).detach();
  }
}

class npipe_byte_client final : public client {
public:
  explicit npipe_byte_client(const std::string& addr) {
    npipe::client_options o;
    o.pipe_dir = addr.substr(0, addr.rfind('/'));
    c_ = npipe::connect(npipe_name(addr), o);
  }
  void request(std::span<const std::byte> req, std::vector<std::byte>& reply) override {
    if (!npipe_write_frame(c_, req) || !npipe_read_frame(c_, reply)) throw std::runtime_error("npipe byte");
  }

private:
  npipe::connection c_;
};


// ------------------------------------------------------- remote (loopback TCP)

// TCP servers listen on a free port and publish it in ADDR.port; remote
// npipe also shares a pre-shared key in DIR/bench-psk.txt.
void publish_port(const std::string& addr, std::uint16_t port) {
  std::string tmp = addr + ".port.tmp";
  std::ofstream(tmp) << port << "\n";
  ::rename(tmp.c_str(), (addr + ".port").c_str());
}
std::uint16_t read_port(const std::string& addr) {
  std::ifstream in(addr + ".port");
  unsigned p = 0;
  if (!(in >> p)) throw std::runtime_error("server not up yet");
  return static_cast<std::uint16_t>(p);
}

int tcp_socket() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sa;
}

// The baseline: the raw UDS stream server's framing and threads, over TCP.
void serve_tcp(const std::string& addr) {
  int l = tcp_socket();
  auto sa = loopback(0);
  socklen_t len = sizeof sa;
  if (::bind(l, reinterpret_cast<sockaddr*>(&sa), sizeof sa) || ::listen(l, SOMAXCONN) ||
      ::getsockname(l, reinterpret_cast<sockaddr*>(&sa), &len))
    die("tcp listen");
  publish_port(addr, ntohs(sa.sin_port));
  for (;;) {
    int fd = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::thread([fd] {
      std::vector<std::byte> in, out;
      while (read_frame(fd, in) && answer(in, out) && write_frame(fd, out)) {
      }
      ::close(fd);
    }).detach();
  }
}

class tcp_client final : public client {
public:
  explicit tcp_client(const std::string& addr) : fd_(tcp_socket()) {
    auto sa = loopback(read_port(addr));
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa)) {
      ::close(fd_);
      die("tcp connect");
    }
  }
  ~tcp_client() override { ::close(fd_); }
  void request(std::span<const std::byte> req, std::vector<std::byte>& reply) override {
    if (!write_frame(fd_, req) || !read_frame(fd_, reply)) die("tcp stream");
  }

private:
  int fd_;
};

std::string psk_path(const std::string& addr) { return addr.substr(0, addr.rfind('/')) + "/bench-psk.txt"; }

// How a remote row secures its link: plaintext, a PSK, or mutual
// certificates (made by bench/run.sh with scripts/make-certs.sh; the
// directory is in NPIPE_BENCH_CERTS), where clients resume with tickets.
enum class link { plain, psk, cert };

std::string cert_file(const char* file) {
  const char* dir = std::getenv("NPIPE_BENCH_CERTS");
  if (!dir) die("NPIPE_BENCH_CERTS is not set (bench/run.sh makes the certificates)");
  return std::string(dir) + "/" + file;
}

npipe::tls_options remote_tls(const std::string& addr, link l, bool gateway = false) {
  npipe::tls_options t;
  switch (l) {
  case link::plain: t.insecure = true; break;
  case link::psk: t.psk = npipe::load_psk_file(psk_path(addr)); break;
  case link::cert:
    t.ca_file = cert_file("ca.pem");
    t.cert_file = cert_file(gateway ? "server.pem" : "client.pem");
    t.key_file = cert_file(gateway ? "server.key" : "client.key");
    break;
  }
  return t;
}

// The blocking npipe server (as npipe-message) plus a gateway in its process.
void serve_npipe_remote(const std::string& addr, link l) {
  if (l == link::psk && ::access(psk_path(addr).c_str(), R_OK) != 0) {
    std::random_device rd;
    std::string hex;
    for (int i = 0; i < 32; ++i) {
      char b[3];
      std::snprintf(b, sizeof b, "%02x", rd() & 0xff);
      hex += b;
    }
    std::string tmp = psk_path(addr) + ".tmp";
    { std::ofstream(tmp) << "bench:" << hex << "\n"; }
    ::chmod(tmp.c_str(), 0600);
    ::rename(tmp.c_str(), psk_path(addr).c_str());
  }
  auto o = npipe_opts(addr, npipe::pipe_type::message);
  o.accept_remote = true;
  std::thread server([&] { serve_npipe_blocking(npipe_name(addr), o); });
  npipe::gateway_options g;
  g.listen = {"127.0.0.1"};
  g.port = 0;
  g.exports = {"*"};
  g.pipe_dir = o.pipe_dir;
  g.tls = remote_tls(addr, l, true);
  npipe::gateway gw(g);
  publish_port(addr, gw.port());
  server.join();
}
void serve_npipe_tls(const std::string& addr) { serve_npipe_remote(addr, link::psk); }
void serve_npipe_plain(const std::string& addr) { serve_npipe_remote(addr, link::plain); }
void serve_npipe_cert(const std::string& addr) { serve_npipe_remote(addr, link::cert); }

npipe::pipe_name remote_pipe(const std::string& addr) {
  return npipe::pipe_name("\\\\127.0.0.1:" + std::to_string(read_port(addr)) + "\\pipe\\" +
                          addr.substr(addr.rfind('/') + 1));
}

template <link L>
class npipe_remote_client final : public client {
public:
  explicit npipe_remote_client(const std::string& addr) {
    npipe::client_options o;
    o.tls = remote_tls(addr, L);
    c_ = npipe::connect(remote_pipe(addr), o);
  }
  void request(std::span<const std::byte> req, std::vector<std::byte>& reply) override { reply = c_.transact(req); }

private:
  npipe::connection c_;
};

template <link L>
void npipe_remote_call(const std::string& addr, std::span<const std::byte> req, std::vector<std::byte>& reply) {
  npipe::client_options o;
  o.tls = remote_tls(addr, L);
  std::error_code ec;
  reply = npipe::call(remote_pipe(addr), req, std::chrono::seconds(10), ec, o);
  if (ec) throw std::system_error(ec, "npipe::call (remote)");
}

// The async client to the same gateway: async_connection on one shared
// I/O thread, each request an async_transact the caller waits for.
net::io_context& client_context() {
  static net::io_context* ctx = [] {
    auto* c = new net::io_context; // lives as long as the process: its thread never stops
    std::thread([c] {
      auto work = net::make_work_guard(*c);
      c->run();
    }).detach();
    return c;
  }();
  return *ctx;
}

template <link L>
class npipe_async_remote_client final : public client {
public:
  explicit npipe_async_remote_client(const std::string& addr) : c_(client_context()) {
    npipe::client_options o;
    o.tls = remote_tls(addr, L);
    std::promise<std::error_code> p;
    c_.async_connect(remote_pipe(addr), o, std::chrono::seconds(10), [&p](std::error_code ec) { p.set_value(ec); });
    if (auto ec = p.get_future().get()) throw std::system_error(ec, "async_connect (remote)");
  }
  void request(std::span<const std::byte> req, std::vector<std::byte>& reply) override {
    std::promise<std::error_code> p;
    c_.async_transact(net::buffer(req.data(), req.size()), std::chrono::seconds(10),
                      [&](std::error_code ec, std::vector<std::byte> r) {
                        reply = std::move(r);
                        p.set_value(ec);
                      });
    if (auto ec = p.get_future().get()) throw std::system_error(ec, "async_transact (remote)");
  }

private:
  npipe::async_connection c_;
};

// -------------------------------------------------------------- NNG, ZMQ

void nng_check(int rv, const char* what) {
  if (rv) throw std::runtime_error(std::string(what) + ": " + nng_strerror(rv));
}

void serve_nng(const std::string& addr) {
  nng_socket s;
  nng_check(nng_rep0_open(&s), "nng_rep0_open");
  nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 0);
  nng_check(nng_listen(s, ("ipc://" + addr).c_str(), nullptr, 0), "nng_listen");
  std::vector<std::byte> out;
  for (;;) {
    nng_msg* m;
    if (nng_recvmsg(s, &m, 0)) continue;
    answer(std::span(static_cast<const std::byte*>(nng_msg_body(m)), nng_msg_len(m)), out);
    nng_msg_clear(m);
    nng_msg_append(m, out.data(), out.size());
    if (nng_sendmsg(s, m, 0)) nng_msg_free(m);
  }
}

class nng_client final : public client {
public:
  explicit nng_client(const std::string& addr) {
    nng_check(nng_req0_open(&s_), "nng_req0_open");
    nng_socket_set_size(s_, NNG_OPT_RECVMAXSZ, 0);
    nng_check(nng_dial(s_, ("ipc://" + addr).c_str(), nullptr, 0), "nng_dial");
  }
  ~nng_client() override { nng_close(s_); }
  void request(std::span<const std::byte> req, std::vector<std::byte>& reply) override {
    nng_msg* m;
    nng_check(nng_msg_alloc(&m, 0), "alloc");
    nng_msg_append(m, req.data(), req.size());
    nng_check(nng_sendmsg(s_, m, 0), "nng_sendmsg");
    nng_check(nng_recvmsg(s_, &m, 0), "nng_recvmsg");
    auto* b = static_cast<const std::byte*>(nng_msg_body(m));
    reply.assign(b, b + nng_msg_len(m));
    nng_msg_free(m);
  }

private:
  nng_socket s_;
};

void* zmq_context() {
  static void* ctx = zmq_ctx_new();
  return ctx;
}

void serve_zmq(const std::string& addr) {
  void* s = zmq_socket(zmq_context(), ZMQ_REP);
  if (zmq_bind(s, ("ipc://" + addr).c_str())) die("zmq_bind");
  std::vector<std::byte> out;
  for (;;) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, s, 0) < 0) continue;
    answer(std::span(static_cast<const std::byte*>(zmq_msg_data(&m)), zmq_msg_size(&m)), out);
    zmq_msg_close(&m);
    zmq_send(s, out.data(), out.size(), 0);
  }
}

class zmq_client final : public client {
public:
  explicit zmq_client(const std::string& addr) : s_(zmq_socket(zmq_context(), ZMQ_REQ)) {
    int zero = 0;
    zmq_setsockopt(s_, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(s_, ("ipc://" + addr).c_str())) die("zmq_connect");
  }
  ~zmq_client() override { zmq_close(s_); }
  void request(std::span<const std::byte> req, std::vector<std::byte>& reply) override {
    if (zmq_send(s_, req.data(), req.size(), 0) < 0) die("zmq_send");
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, s_, 0) < 0) die("zmq_recv");
    auto* b = static_cast<const std::byte*>(zmq_msg_data(&m));
    reply.assign(b, b + zmq_msg_size(&m));
    zmq_msg_close(&m);
  }

private:
  void* s_;
};

template <class C>
std::unique_ptr<client> make(const std::string& addr) {
  return std::make_unique<C>(addr);
}

} // namespace

std::vector<transport> all_transports() {
  std::vector<transport> all = {
      {"uds-stream", serve_stream, make<stream_client>, 0, nullptr, false, true},
      {"uds-epoll", serve_uds_epoll, make<stream_client>, 0, nullptr, false, true},
      {"asio-uds", serve_asio_uds, make<stream_client>},
      {"libuv-pipe", serve_libuv_pipe, make<stream_client>},
      {"uds-seqpacket", serve_seqpacket, make<seqpacket_client>, 2 << 20},
      {"npipe-message", serve_npipe_message, make<npipe_client>, 0, npipe_call},
      {"npipe-async", serve_npipe_async, make<npipe_client>, 0, npipe_call},
      {"npipe-async-1t", serve_npipe_async_1t, make<npipe_client>, 0, npipe_call},
      {"npipe-byte", serve_npipe_byte, make<npipe_byte_client>},
      {"nng-reqrep", serve_nng, make<nng_client>},
      {"zmq-reqrep", serve_zmq, make<zmq_client>},
      // Remote: loopback TCP, compared with raw TCP (the remote baseline).
      {"tcp-raw", serve_tcp, make<tcp_client>, 0, nullptr, true, true},
      {"npipe-remote-plain", serve_npipe_plain, make<npipe_remote_client<link::plain>>, 0,
       npipe_remote_call<link::plain>, true},
      {"npipe-remote-tls", serve_npipe_tls, make<npipe_remote_client<link::psk>>, 0, npipe_remote_call<link::psk>, true},
      {"npipe-async-remote-tls", serve_npipe_tls, make<npipe_async_remote_client<link::psk>>, 0, nullptr, true},
  };
  // Certificates come from bench/run.sh; without them the row is left out.
  if (std::getenv("NPIPE_BENCH_CERTS"))
    all.push_back({"npipe-remote-tls-cert", serve_npipe_cert, make<npipe_remote_client<link::cert>>, 0,
                   npipe_remote_call<link::cert>, true});
  return all;
}

} // namespace bench
