// SPDX-License-Identifier: MIT
#pragma once
// One remote connection's session on a non-blocking socket, TLS or
// plaintext: every OpenSSL handshake, read, write and shutdown call of remote
// pipes, and what their failures mean. It never waits: a call that cannot go
// on says which readiness it needs, and its driver waits for that (the
// blocking client with poll(), the gateway and the async client with Asio).

#include "core/protocol.hpp"
#include "remote/tls.hpp"

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>

namespace npipe::detail::tls {

/// What a session call did: its work; nothing until the socket is readable
/// (or writable); or the end of the connection, with end_error() saying why.
enum class io { done, want_read, want_write, end };

/// Not thread-safe: one caller at a time (a mutex, a strand). No call
/// blocks or waits. The socket stays the caller's: the session never closes
/// it and must not outlive it.
class session {
public:
  /// Plaintext on the connected, non-blocking socket `fd` until a start_*()
  /// call. `peer` names the other end in error details ("the gateway at h:p").
  session(int fd, std::string peer) noexcept : fd_(fd), peer_(std::move(peer)) {}
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  /// Speak TLS as a client that verifies the server as `host` (server_name
  /// if set), or as a server with `ctx`'s credentials. False with ec and a
  /// detail if OpenSSL cannot set it up (the session stays plaintext). A
  /// client offers the ticket `ctx` keeps for `where` (the gateway's
  /// "host:port") and that name, if any, and keeps the one it is sent.
  /// The session holds `ctx` while it lives: OpenSSL calls back into it
  /// after the handshake (a ticket, an alert), when nothing else may.
  bool start_client(std::shared_ptr<const context> ctx, const std::string& host, const std::string& where,
                    std::error_code& ec);
  bool start_server(std::shared_ptr<const context> ctx, std::error_code& ec);

  /// The OpenSSL session (null for plaintext), for peer_identity_of().
  SSL* native() const noexcept { return ssl_; }
  const std::string& peer() const noexcept { return peer_; }

  /// One step of the TLS handshake (done at once for plaintext). At `end`,
  /// end_error() and end_detail() say why: a refusal from the peer, a
  /// certificate that failed verification, a peer that does not speak TLS...
  io handshake();
  /// Read up to `cap` bytes (one TLS record at most); `n` the count when
  /// done. At `end`, end_error() is clear for the end of the stream
  /// (close_notify, or TCP closed), else the error, whose detail is also this
  /// thread's last_error_detail(). After an error, every call ends with it again.
  io read(std::byte* p, std::size_t cap, std::size_t& n);
  /// Write up to `len` bytes without SIGPIPE; `n` what was taken when done.
  /// `end` as for read(), where a clean end means the peer is gone.
  io write(const std::byte* p, std::size_t len, std::size_t& n);
  /// read() until `cap` is full or a read cannot go on: every record already
  /// here, as recv() takes every byte (a flush frame right behind a message
  /// must be seen with it). Done if it read anything; the next call reports an end.
  io read_all(std::byte* p, std::size_t cap, std::size_t& n);
  /// write() of gathered pieces: TLS has no gathered write, so a small first
  /// piece (a frame header) and what follows go out as one record of at most
  /// 16 KiB, else the first piece alone. `n` what was taken when done.
  io write_gathered(std::span<const std::span<const std::byte>> bufs, std::size_t& n);
  /// pending(): decrypted bytes inside OpenSSL (a read takes them without
  /// the socket); buffered(): bytes of any kind there, even part of a record.
  bool pending() const noexcept { return ssl_ && SSL_pending(ssl_) > 0; }
  bool buffered() const noexcept { return ssl_ && SSL_has_pending(ssl_); }
  /// close_notify, if the handshake is done and the socket takes it now
  /// (nothing for plaintext). The socket itself is left as it is.
  void shutdown() noexcept;

  /// Why the last call said `end`: an error, or nothing for a clean end.
  const std::error_code& end_error() const noexcept { return end_ec_; }
  const std::string& end_detail() const noexcept { return end_detail_; }
  /// After a failed client handshake: the status of the plaintext npipe reply
  /// the gateway sent instead of TLS, if one came (overloaded: it let the
  /// connection go to make room, and a client that may wait tries again).
  std::optional<protocol::status> plaintext_answer() const noexcept;

private:
  bool open(std::shared_ptr<const context> ctx, std::error_code& ec);
  io result(int ret, bool handshaking);
  io again();

  int fd_;
  std::shared_ptr<const context> ctx_; // destroyed after ssl_ (~session frees it first)
  SSL* ssl_ = nullptr;
  std::string peer_;
  std::string ticket_key_; // a client's: where its tickets are kept (ticket_key_index)
  std::error_code end_ec_;
  std::string end_detail_;
  bool failed_ = false; // an error ended the session: later calls end with it
  std::unique_ptr<std::byte[]> gather_; // write_gathered()'s record, made on first use
};

} // namespace npipe::detail::tls
