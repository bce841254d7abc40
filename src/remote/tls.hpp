// SPDX-License-Identifier: MIT
#pragma once
// TLS 1.3 through OpenSSL 3 for remote pipes: contexts built from
// tls_options (certificates and/or external PSKs in psk_dhe_ke mode), the
// peer's identity after a handshake and OpenSSL's error texts. A
// connection's session (handshake, reads, writes) is tls::session.

#include <npipe/options.hpp>

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace npipe::detail::tls {

enum class role { client, server };

/// Checks tls_options for `r` (what is required, what is contradictory, PSK
/// sizes); false with a detail saying what to fix.
bool check_options(role r, const tls_options& o, std::error_code& ec);

/// A gateway's default session ticket lifetime, in seconds; a client keeps
/// a ticket as long as the gateway says, up to TLS 1.3's limit (7 days).
inline constexpr long ticket_lifetime_s = 600;
inline constexpr long max_ticket_lifetime_s = 7 * 24 * 3600;

/// A TLS 1.3-only context with this end's credentials loaded and peer
/// verification as the options say. Shared by the sessions it creates.
class context {
public:
  /// `resume_for`: a server's session ticket lifetime (0: no tickets); see
  /// gateway_options::session_resumption.
  static std::shared_ptr<context> make(role r, const tls_options& o, std::error_code& ec,
                                       std::chrono::seconds resume_for = std::chrono::seconds(ticket_lifetime_s));
  /// A client context for `o`, shared by every dial with the same options
  /// while their files are unchanged: building one costs OpenSSL 3 about
  /// 100 µs (it fetches its algorithms), more than the client's whole part
  /// of a PSK handshake, and loading a large CA file far more. A few recent
  /// configurations are kept (their keys with them, as the caller's options
  /// hold them); each dial reads the certificate, key and CA files again,
  /// and one whose bytes changed (or that cannot be read) makes a new context.
  static std::shared_ptr<context> for_client(const tls_options& o, std::error_code& ec);
  ~context();
  SSL_CTX* native() const noexcept { return ctx_; }
  role side() const noexcept { return role_; }
  const tls_options& options() const noexcept { return opts_; }
  /// The context a session was created from (null if not from one of these),
  /// set by attach(), which the session that holds `c` calls.
  static const context* of(SSL* ssl) noexcept;
  static void attach(SSL* ssl, const context* c) noexcept;

  /// Whether sessions resume: a gateway that verifies client certificates
  /// issues TLS 1.3 session tickets, and a client with certificates (no
  /// PSK) keeps them and offers one on its next connect to the same
  /// gateway and name, skipping both sides' certificate work.
  bool resumes() const noexcept { return resumes_; }
  /// A client's ticket for `key` (gateway address and name), taken: each is
  /// offered once. Null if none; else the caller owns the reference.
  SSL_SESSION* take_ticket(const std::string& key) const;
  /// Keeps `s` (this takes the reference) as the ticket for `key`.
  void keep_ticket(const std::string& key, SSL_SESSION* s) const;

private:
  context(role r, tls_options o) : role_(r), opts_(std::move(o)) {}
  role role_;
  tls_options opts_;
  SSL_CTX* ctx_ = nullptr;
  bool resumes_ = false;
  std::int64_t resume_for_ = 0; // a server's ticket lifetime, seconds
  // A client's tickets, the oldest first; a few gateways' worth.
  mutable std::mutex tickets_mu_;
  mutable std::vector<std::pair<std::string, SSL_SESSION*>> tickets_;
};


/// Sets up `x` for session tickets when `resumes` (a server's lifetime in
/// `*lifetime`, which outlives `x`), or turns them off (tls_tickets.cpp).
bool set_up_tickets(SSL_CTX* x, role r, bool resumes, const std::int64_t* lifetime);
/// A certificate that is within its validity now (a resumed session's was
/// verified when the session was made).
bool still_valid(const X509* cert);
/// The SSL ex_data slot of a server session's external PSK: 1 + its index
/// in the context's options, or none.
int psk_index();

/// The SSL ex_data slot of a client session's ticket key (a std::string the
/// session owns): where new_ticket() files the tickets it is sent.
int ticket_key_index();

/// Whether the handshake of `ssl` resumed a session from a ticket (not an
/// external PSK, which OpenSSL also counts as a resumption).
bool resumed_from_ticket(SSL* ssl, const context& ctx) noexcept;

/// After a completed handshake: the peer's identity ("CN=...,O=..." from its
/// certificate subject, or "psk:IDENTITY"); false with a detail if the
/// session does not meet our rules (a PSK without an (EC)DHE key exchange).
bool peer_identity_of(SSL* ssl, const context& ctx, std::string& who, std::error_code& ec);

/// The text of OpenSSL's error queue (cleared), or `fallback`.
std::string last_error_text(const std::string& fallback = "unknown TLS error");

} // namespace npipe::detail::tls
