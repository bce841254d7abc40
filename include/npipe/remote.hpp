// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// Remote pipes: `\\HOST\pipe\NAME` across machines.
///
/// As SMB does for Windows pipes, one listener per host serves every pipe
/// it exports: the npipe **gateway** listens on one TCP port
/// (default_remote_port), secures each connection with TLS 1.3 (mutual
/// certificates or a pre-shared key; plaintext only when both ends ask),
/// reads which pipe the client wants, and relays it to that local pipe. The
/// local server sees an ordinary client whose peer_identity is remote (its
/// address, and its certificate subject or PSK identity as the user), and
/// admits it only if it opted in with server_options::accept_remote.
///
/// Clients need nothing new: connect() and call() given `\\HOST\pipe\NAME`
/// (or `\\HOST:PORT\pipe\NAME`) go to HOST's gateway, secured as
/// client_options::tls says. Message mode, "more data", transact, busy and
/// wait, flush and the error conditions are the same as for local pipes.
///
/// @code
/// npipe::gateway_options g;
/// g.exports = {"tpipe"};
/// g.tls.ca_file = "ca.pem"; g.tls.cert_file = "gw.pem"; g.tls.key_file = "gw.key";
/// npipe::gateway gw(g);            // listens on every interface, port 4455
/// @endcode
///
/// Linux only for now (not_supported on Windows).

#include <npipe/export.h>
#include <npipe/options.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace npipe {

/// The TCP port gateways listen on and clients dial unless told otherwise.
inline constexpr std::uint16_t default_remote_port = 4455;

/// Options for a gateway.
struct gateway_options {
  /// Addresses to listen on ("0.0.0.0", "127.0.0.1", "::", "::1", "[::1]");
  /// empty: every interface (IPv6 and IPv4).
  std::vector<std::string> listen;
  /// The port; 0 picks a free one (see gateway::port()).
  std::uint16_t port = default_remote_port;
  /// The pipe NAMEs remote clients may reach (compared case-insensitively);
  /// "*" exports every pipe on this machine. Empty exports nothing.
  std::vector<std::string> exports;
  /// How clients must authenticate: certificates (ca_file makes client
  /// certificates mandatory; cert_file/key_file are the gateway's own), PSKs,
  /// or both; `insecure` for plaintext.
  tls_options tls;
  /// TCP connect to forwarded hello: a client slower than this is dropped
  /// before it reaches any pipe.
  timeout handshake_timeout = defaults::handshake_timeout;
  /// TCP connect to a finished TLS handshake (on a plaintext gateway: to a
  /// whole hello): an unauthenticated connection slower than this is dropped.
  timeout auth_timeout{3'000};
  /// Most connections that have not authenticated yet (not through TLS, or
  /// on a plaintext gateway not through their hello), from all addresses.
  /// When a new one comes and every slot is taken, the oldest
  /// unauthenticated connection of the address holding the most slots is
  /// dropped: nobody can lock the port without credentials.
  unsigned max_unauthenticated = 64;
  /// The same per source address (IPv4 address, or IPv6 /64 network); past
  /// it that address's oldest unauthenticated connection is dropped.
  unsigned max_unauthenticated_per_address = 16;
  /// A relayed connection with no bytes in either direction for this long is
  /// closed, counted from the server's answer (a client waiting for a busy
  /// pipe is not idle). TCP keepalive also detects vanished hosts. forever
  /// keeps them.
  timeout idle_timeout{300'000};
  /// Most authenticated remote clients at once; the next one is told the
  /// pipe is busy (over TLS) and closed at once. Unauthenticated connections
  /// have their own, smaller budget (max_unauthenticated).
  unsigned max_connections = defaults::max_connections;
  /// I/O threads relaying bytes.
  unsigned threads = 2;
  /// Where the local pipes are (as server_options::pipe_dir).
  std::string pipe_dir;
  /// With client certificates (tls.ca_file): how long after a client's full
  /// TLS handshake it may resume with a session ticket (skipping both ends'
  /// certificate work); its certificate chain is verified again after that.
  /// Zero: no tickets, every connect a full handshake. At most 7 days.
  std::chrono::seconds session_resumption{600};
};

/// What a gateway has done so far. Every connection taken ends up in
/// exactly one of dropped, tls_failed, refused and relayed (a relayed one
/// later also in closed), so once the gateway is quiet:
/// accepted == dropped + tls_failed + refused + relayed and closed == relayed.
struct gateway_stats {
  std::uint64_t accepted = 0;    ///< TCP connections taken
  std::uint64_t dropped = 0;     ///< let go before authenticating, for a newer one (the unauthenticated caps)
  std::uint64_t tls_failed = 0;  ///< ended before or in the TLS handshake (bad or missing credentials, not TLS,
                                 ///< timeout, left)
  std::uint64_t refused = 0;     ///< authenticated but not relayed (not exported, bad hello, no server, the
                                 ///< server's refusal, over max_connections)
  std::uint64_t relayed = 0;     ///< accepted by a local pipe's server and relayed to it
  std::uint64_t closed = 0;      ///< relayed connections that have ended
  unsigned active = 0;           ///< connections open now
  std::uint64_t resumed = 0;     ///< TLS handshakes that resumed an earlier session (a ticket; certificates only)
};

/// One thing that happened to a remote client (see gateway::on_event).
struct gateway_event {
  enum class kind : std::uint8_t {
    relayed,    ///< authenticated, asked for an exported pipe, accepted by its server
    refused,    ///< authenticated but not relayed (not exported, no server, the server refused, bad hello, over a cap)
    tls_failed, ///< ended before or during the TLS handshake
    closed,     ///< a relayed connection ended
    dropped,    ///< an unauthenticated connection let go for a newer one (max_unauthenticated...)
  };
  kind what = kind::relayed;
  std::string address; ///< the client's, "192.0.2.7:50123" or "[2001:db8::1]:50123"
  std::string user;    ///< its TLS identity, once known
  std::string pipe;    ///< the pipe NAME it asked for, once known
  std::string reason;  ///< for refused, tls_failed and closed: why
};

namespace detail {
class gateway_impl;
}

/// A running gateway: listens at construction (or open()), relays on its
/// own threads, stops at close() or destruction.
class NPIPE_API gateway {
public:
  gateway() noexcept;
  /// Start listening. @throws std::system_error (bad options, unreadable
  /// certificates or keys, port in use).
  explicit gateway(const gateway_options& opts);
  gateway(gateway&&) noexcept;
  gateway& operator=(gateway&&) noexcept;
  ~gateway();

  void open(const gateway_options& opts, std::error_code& ec);
  void open(const gateway_options& opts);
  bool is_open() const noexcept;
  /// The port it listens on (useful with port 0).
  std::uint16_t port() const noexcept;
  gateway_stats stats() const noexcept;
  /// Call `f` for every connection event (a log, an audit trail). Runs on
  /// the gateway's threads, one call at a time; keep it short. Replaces any
  /// earlier observer; an empty function removes it.
  void on_event(std::function<void(const gateway_event&)> f);
  /// Stop listening and close every relayed connection.
  void close() noexcept;

private:
  std::unique_ptr<detail::gateway_impl> impl_;
};

/// Read pre-shared keys from a file: one `IDENTITY:HEXKEY` per line (blank
/// lines and lines starting with # ignored), keys of at least 32 bytes. The
/// file must not be readable by other users.
NPIPE_API std::vector<psk_key> load_psk_file(const std::string& path, std::error_code& ec);
NPIPE_API std::vector<psk_key> load_psk_file(const std::string& path);

} // namespace npipe
