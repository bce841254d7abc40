// SPDX-License-Identifier: MIT
#pragma once
// Linux async pipe: the byte stream it reads and writes. A stream socket as
// it is (a local pipe's Unix socket, a plaintext remote link's TCP), or TLS
// over TCP through a tls::session, whose calls never block and say which
// readiness to wait for (Asio's async_wait). One branch per call, no
// virtual call and no copy: the socket path is Asio's own.

#include "remote/tls_session.hpp"

#include <npipe/error.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(generic/stream_protocol.hpp)
#include NPIPE_NET_HEADER(post.hpp)
#include NPIPE_NET_HEADER(write.hpp)

#include <sys/socket.h>

#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace npipe::detail {

class async_stream {
public:
  using socket_type = net::generic::stream_protocol::socket;
  template <class Executor>
  explicit async_stream(const Executor& ex) : socket_(ex) {}

  socket_type& socket() noexcept { return socket_; }
  /// From now on through `s`, TLS on this socket with its handshake done.
  void use(std::unique_ptr<tls::session> s) noexcept {
    tls_ = std::move(s);
    read_buffered_ = true; // the handshake's reads may have taken bytes past it
  }
  tls::session* session() const noexcept { return tls_.get(); }

  /// What is there, without waiting; 0 with ec would_block, eof or an error.
  /// Over TLS every record already here, as recv() takes every byte.
  std::size_t read_some(void* p, std::size_t cap, std::error_code& ec) {
    if (!tls_) return socket_.read_some(net::buffer(p, cap), into(ec));
    std::size_t n = 0;
    tls::io r = tls_->read_all(static_cast<std::byte*>(p), cap, n);
    read_wants_write_ = r == tls::io::want_write;
    // A full buffer may leave whole records inside OpenSSL, which the socket's readiness cannot show.
    read_buffered_ = r == tls::io::done && n == cap && tls_->buffered();
    if (r == tls::io::done) ec.clear();
    else if (r != tls::io::end) ec = net_error(net::error::would_block);
    else if (tls_->end_error()) ec = tls_->end_error();
    else ec = net_error(net::error::eof);
    return n;
  }
  /// What a failed read or write says: the TLS end's own words, or `doing` and the error.
  std::string error_detail(const std::error_code& ec, const char* doing) const {
    return tls_ && tls_->end_error() ? tls_->end_detail() : doing + ec.message();
  }

  /// h(error_code) once read_some() may have something.
  template <class H>
  void async_wait_read(H&& h) {
    if (!tls_) return socket_.async_wait(socket_type::wait_read, std_errors(std::forward<H>(h)));
    if (read_buffered_)
      return net::post(socket_.get_executor(), [h = std::forward<H>(h)]() mutable { h(std::error_code()); });
    socket_.async_wait(read_wants_write_ ? socket_type::wait_write : socket_type::wait_read,
                       std_errors(std::forward<H>(h)));
  }
  /// h(error_code, n) with some bytes, or the end.
  template <class H>
  void async_read_some(net::mutable_buffer b, H h) {
    if (!tls_) return socket_.async_read_some(b, std_errors(std::move(h)));
    async_wait_read([this, b, h = std::move(h)](std::error_code ec) mutable {
      std::size_t n = ec ? 0 : read_some(b.data(), b.size(), ec);
      if (ec == net_error(net::error::would_block)) return async_read_some(b, std::move(h));
      h(ec, n);
    });
  }

  /// Write all of `bufs` (valid and unchanged until it completes), then
  /// h(error_code, bytes taken). A write stopped by a cancellation (a
  /// timed-out send) tore the stream if began() says so.
  template <class H>
  void async_write(const std::vector<net::const_buffer>& bufs, H h) {
    if (!tls_) return net::async_write(socket_, bufs, std_errors(std::move(h)));
    if (!std::exchange(full_, false)) return tls_write(bufs, 0, std::move(h));
    // The last write found the socket full: nothing goes to OpenSSL (which
    // would own a record from then on) until it can take some, so a send
    // given up meanwhile took nothing, as with a plain socket.
    socket_.async_wait(socket_type::wait_write, std_errors([this, &bufs, h = std::move(h)](std::error_code ec) mutable {
                         if (ec) {
                           full_ = true; // as full as before
                           return h(ec, std::size_t{0});
                         }
                         tls_write(bufs, 0, std::move(h));
                       }));
  }
  /// Whether a write that stopped after taking `n` bytes left part of the stream out.
  bool began(std::size_t n) const noexcept { return n > 0 || record_owed_; }

  /// A best effort at close: `n` bytes if the socket takes them now, never waiting.
  void try_write(const std::byte* p, std::size_t n) noexcept {
    std::size_t k = 0;
    if (!tls_) ::send(socket_.native_handle(), p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    else if (!record_owed_) (void)tls_->write(p, n, k);
  }
  /// close_notify if TLS and the socket takes it now, then the socket.
  void close() noexcept {
    std::error_code ignore;
    if (tls_ && socket_.is_open()) tls_->shutdown();
    tls_.reset(); // it names the socket's descriptor, which closing frees
    socket_.shutdown(net::socket_base::shutdown_both, into(ignore));
    socket_.close(into(ignore));
  }

private:
  template <class H>
  void tls_write(const std::vector<net::const_buffer>& bufs, std::size_t done, H h) {
    for (;;) {
      pieces_.clear();
      std::size_t skip = done;
      for (const auto& b : bufs) {
        if (skip >= b.size()) {
          skip -= b.size();
          continue;
        }
        pieces_.emplace_back(static_cast<const std::byte*>(b.data()) + skip, b.size() - skip);
        skip = 0;
      }
      std::size_t n = 0;
      tls::io r = pieces_.empty() ? tls::io::done : tls_->write_gathered(pieces_, n);
      if (r == tls::io::done && !pieces_.empty()) {
        record_owed_ = false;
        done += n;
        continue;
      }
      if (r == tls::io::done || r == tls::io::end) {
        std::error_code ec;
        if (r == tls::io::end) ec = tls_->end_error() ? tls_->end_error() : make_error_code(errc::broken_pipe);
        return net::post(socket_.get_executor(), [h = std::move(h), ec, done]() mutable { h(ec, done); });
      }
      // OpenSSL owns a record now and sends it before anything else.
      record_owed_ = full_ = true;
      socket_.async_wait(r == tls::io::want_read ? socket_type::wait_read : socket_type::wait_write,
                         std_errors([this, &bufs, done, h = std::move(h)](std::error_code ec) mutable {
                           if (ec) return h(ec, done);
                           tls_write(bufs, done, std::move(h));
                         }));
      return;
    }
  }

  socket_type socket_;
  std::unique_ptr<tls::session> tls_; // after socket_: it must not outlive the descriptor
  std::vector<std::span<const std::byte>> pieces_;
  bool read_buffered_ = false;   // the last read filled its buffer with more inside OpenSSL
  bool read_wants_write_ = false;
  bool record_owed_ = false; // a record OpenSSL took is not all out
  bool full_ = false;        // the last write had to wait for the socket (Asio re-arms each wait: no edge is missed)
};

} // namespace npipe::detail
