// SPDX-License-Identifier: MIT
#pragma once
// TLS 1.3 through OpenSSL 3 for remote pipes: contexts built from
// tls_options (certificates and/or external PSKs in psk_dhe_ke mode), the
// peer's identity after a handshake, error texts, and a byte_stream over a
// TLS session for the blocking client.

#include "core/protocol.hpp"
#include "transport/byte_stream.hpp"

#include <npipe/options.hpp>

#include <openssl/ssl.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>

namespace npipe::detail::tls {

enum class role { client, server };

/// Checks tls_options for `r` (what is required, what is contradictory, PSK
/// sizes); false with a detail saying what to fix.
bool check_options(role r, const tls_options& o, std::error_code& ec);

/// A TLS 1.3-only context with this end's credentials loaded and peer
/// verification as the options say. Shared by the sessions it creates.
class context {
public:
  static std::shared_ptr<context> make(role r, const tls_options& o, std::error_code& ec);
  ~context();
  SSL_CTX* native() const noexcept { return ctx_; }
  role side() const noexcept { return role_; }
  const tls_options& options() const noexcept { return opts_; }

private:
  context(role r, tls_options o) : role_(r), opts_(std::move(o)) {}
  role role_;
  tls_options opts_;
  SSL_CTX* ctx_ = nullptr;
};

/// A client session for `ctx` that verifies the server as `host`
/// (server_name if set). Null with ec on failure.
SSL* new_client_session(const context& ctx, const std::string& host, std::error_code& ec);

/// After a completed handshake: the peer's identity ("CN=...,O=..." from its
/// certificate subject, or "psk:IDENTITY"); false with a detail if the
/// session does not meet our rules (a PSK without an (EC)DHE key exchange).
bool peer_identity_of(SSL* ssl, const context& ctx, std::string& who, std::error_code& ec);

/// The error and detail for a failed handshake or I/O call that returned
/// `ret` (clears OpenSSL's error queue). `peer` names the other end.
std::error_code handshake_error(SSL* ssl, int ret, const std::string& peer);

/// Make `ssl` read and write the socket `fd` (without SIGPIPE); false if
/// OpenSSL cannot allocate.
bool attach_socket(SSL* ssl, int fd) noexcept;

/// After a failed client handshake on a socket attached with
/// attach_socket(): the status of the plaintext npipe reply the gateway sent
/// instead of TLS, if that is what came (status::overloaded: it let the
/// connection go to make room; a client that may wait tries again).
std::optional<protocol::status> plaintext_answer(SSL* ssl) noexcept;

/// After an SSL_read/SSL_write that returned `ret` and is not WANT_*: false
/// for an end of the stream (close_notify, or TCP closed without it), else
/// true with the error and a detail (an alert from `peer` names what it refused).
bool session_failure(SSL* ssl, int ret, const std::string& peer, std::error_code& ec);

/// The text of OpenSSL's error queue (cleared), or `fallback`.
std::string last_error_text(const std::string& fallback = "unknown TLS error");

/// A byte_stream over a TLS session on a non-blocking socket (owns both).
/// OpenSSL sessions are not thread-safe: every SSL call is under a mutex,
/// held only while the (non-blocking) call runs.
class tls_stream final : public byte_stream {
public:
  tls_stream(int fd, SSL* ssl, std::string peer) noexcept : fd_(fd), ssl_(ssl), peer_(std::move(peer)) {}
  ~tls_stream() override;
  tls_stream(const tls_stream&) = delete;
  tls_stream& operator=(const tls_stream&) = delete;

  /// Run the client handshake until `dl`. False with ec and detail on failure.
  bool handshake(deadline dl, std::error_code& ec) noexcept;

  io_result read_some(std::span<std::byte> buf, std::error_code& ec) noexcept override;
  io_result write_some(std::span<const std::span<const std::byte>> bufs, std::error_code& ec) noexcept override;
  bool wait(bool for_write, deadline dl, std::error_code& ec) noexcept override;
  void shutdown() noexcept override;
  SSL* native() const noexcept { return ssl_; }

private:
  io_result failed(int ret, bool reading, std::error_code& ec) noexcept;

  int fd_;
  SSL* ssl_;
  std::string peer_;
  std::mutex mu_;
  bool read_wants_write_ = false;  // the last SSL_read needs the socket writable
  bool write_wants_read_ = false;  // the last SSL_write needs the socket readable
  bool shut_ = false;
  bool buffered_ = false;          // whole records may wait inside OpenSSL (read-ahead)
  std::unique_ptr<std::byte[]> gather_; // small gathered writes become one TLS record
};

} // namespace npipe::detail::tls
