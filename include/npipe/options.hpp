// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// Pipe types, read modes, timeouts, access policies and the option structs
/// for servers and clients.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace npipe {

/// How a pipe carries data, chosen by the server (Win32 PIPE_TYPE_*).
enum class pipe_type : std::uint8_t {
  byte = 0,    ///< a byte stream; write boundaries are not kept
  message = 1, ///< every write is one message; boundaries are kept
};

/// How one end reads (Win32 PIPE_READMODE_*). Message read mode needs a
/// message pipe; byte read mode works on both and ignores boundaries.
enum class read_mode : std::uint8_t {
  byte = 0,
  message = 1,
};

/// A wait limit for a blocking call. `forever` never times out; a zero
/// timeout tries once without waiting.
using timeout = std::chrono::milliseconds;
inline constexpr timeout forever{-1};
inline constexpr timeout no_wait{0};

/// Who may connect to a server.
///
/// On Linux this becomes the socket file's mode (and group) *and* a check of
/// the client's credentials (SO_PEERCRED) at connect time; on Windows an
/// explicit DACL. Root (Windows: SYSTEM) is always allowed, as is the user
/// that runs the server.
struct access_policy {
  enum class kind : std::uint8_t {
    current_user, ///< only the server's own user (the default)
    group,        ///< members of `gid` (by the client's primary or the listed group)
    everyone,     ///< any local user
    list,         ///< exactly the users in `uids` and the groups in `gids`
  };
  kind who = kind::current_user;
  std::uint32_t gid = 0;
  std::vector<std::uint32_t> uids;
  std::vector<std::uint32_t> gids;

  static access_policy current_user() { return {}; }
  static access_policy group(std::uint32_t g) { return {kind::group, g, {}, {}}; }
  static access_policy everyone() { return {kind::everyone, 0, {}, {}}; }
  static access_policy only(std::vector<std::uint32_t> users, std::vector<std::uint32_t> groups = {}) {
    return {kind::list, 0, std::move(users), std::move(groups)};
  }
};

/// server_options::max_instances value meaning "no cap per name" (Win32
/// PIPE_UNLIMITED_INSTANCES); max_connections still applies.
inline constexpr unsigned unlimited_instances = 255;

/// Defaults shared by servers and clients.
namespace defaults {
inline constexpr std::size_t max_message_size = 32u << 20; ///< 32 MiB, as D-Bus
inline constexpr std::size_t buffer_size = 64u << 10;      ///< 64 KiB
inline constexpr unsigned max_instances = 255;             ///< unlimited_instances
inline constexpr unsigned max_connections = 1024;          ///< total, whatever max_instances says
inline constexpr std::size_t max_queued_bytes = 1u << 20;  ///< replies waiting for a slow reader, per connection
inline constexpr unsigned max_in_flight = 16;              ///< requests a handler works on at once, per connection
inline constexpr timeout idle_timeout{-1};                 ///< local pipes: never (sessions may be long-lived)
inline constexpr timeout stop_grace{5'000};                ///< how long stop() lets in-flight requests finish
inline constexpr unsigned max_pending = 64;                ///< unfinished handshakes, as D-Bus
inline constexpr unsigned max_waiting = 64;                ///< clients queued for a busy pipe
inline constexpr timeout handshake_timeout{10'000};
inline constexpr timeout connect_timeout{5'000};           ///< like NMPWAIT_USE_DEFAULT_WAIT
} // namespace defaults

/// Options for creating a server (Win32 CreateNamedPipe parameters and more).
struct server_options {
  pipe_type type = pipe_type::message;
  /// The server end's read mode; defaults to the pipe type.
  std::optional<npipe::read_mode> read_mode;
  /// Most clients connected at once (1..254), or unlimited_instances (255,
  /// Win32 PIPE_UNLIMITED_INSTANCES): then only max_connections limits.
  /// Client N+1 gets pipe_busy, or waits when it asked to.
  unsigned max_instances = defaults::max_instances;
  /// Hard cap on connected clients, whatever max_instances says (each one
  /// costs a file descriptor). Raise it, and RLIMIT_NOFILE, for big servers.
  unsigned max_connections = defaults::max_connections;
  /// Kernel buffer sizes per direction (Win32 nInBufferSize/nOutBufferSize;
  /// on Linux SO_RCVBUF/SO_SNDBUF). 0 keeps the system default.
  std::size_t in_buffer_size = 0;
  std::size_t out_buffer_size = 0;
  /// Largest message this server accepts (at least 4096); larger ones are
  /// refused before anything is allocated and the offending connection is closed.
  std::size_t max_message_size = defaults::max_message_size;
  access_policy access = access_policy::current_user();
  /// A client must complete the handshake within this time.
  timeout handshake_timeout = defaults::handshake_timeout;
  /// Most connections still in their handshake at once; more are closed.
  unsigned max_pending = defaults::max_pending;
  /// Most clients waiting for a free instance; more get pipe_busy.
  unsigned max_waiting = defaults::max_waiting;
  /// Most connections from one user (uid) at once; more get pipe_busy at
  /// once, so one user cannot take every instance. 0: only max_instances limits.
  unsigned max_per_user = 0;
  /// Linux: directory holding the socket files (empty: $NPIPE_DIR, else
  /// the machine-wide default, see README). Ignored on Windows.
  std::string pipe_dir;

  /// Let remote clients in through a gateway running as this server's user
  /// (or root) on this machine (remote.hpp). Off by default: like Win32
  /// PIPE_REJECT_REMOTE_CLIENTS, a local pipe refuses them even when a
  /// gateway exports its name. Linux only for now (not_supported on Windows).
  bool accept_remote = false;
};

/// Options for an async_server: those of every server, and three that only
/// the async server has a use for, as it alone works on the connections it
/// accepts (a blocking server hands each one to its caller, whose calls
/// block instead of queueing). A plain server_options converts to this, with
/// these three at their defaults. (Being a derived struct, it takes no
/// designated initialisers; set the fields by name.)
struct async_server_options : server_options {
  async_server_options() = default;
  async_server_options(const server_options& base) : server_options(base) {} // implicit on purpose
  /// A connection that sends nothing and has no request in flight for this
  /// long is closed. forever (the default) keeps idle sessions.
  timeout idle_timeout = defaults::idle_timeout;
  /// Requests of one connection handed to serve()'s handler at once; a
  /// client that pipelines more waits (the server stops reading) until
  /// replies go out.
  unsigned max_in_flight = defaults::max_in_flight;
  /// Bytes one client may make the server queue for it: replies waiting for
  /// a client that reads slowly (past this the server stops reading that
  /// client's requests until it catches up, so memory stays bounded; one
  /// reply may exceed it), and acknowledgements owed to a client that
  /// flushes without reading (Linux; Windows pipes owe none).
  std::size_t max_queued_bytes = defaults::max_queued_bytes;
};

/// A pre-shared key for TLS 1.3 PSK (psk_dhe_ke: an ephemeral key exchange
/// on top, so recorded traffic stays safe if the key leaks later).
struct psk_key {
  std::string identity;        ///< 1..128 printable ASCII characters, sent in clear
  std::vector<std::uint8_t> key; ///< at least 32 random bytes (e.g. `openssl rand -hex 32`)
};

/// How remote pipes are secured: TLS 1.3 with mutual certificates or a
/// pre-shared key, or (both ends must ask) plaintext. The same struct
/// configures clients (client_options::tls) and gateways.
struct tls_options {
  /// PEM file of the CA(s) that sign the peer's certificate. Clients verify
  /// the server with it (and its name, see server_name); a gateway given a CA
  /// requires every client to present a certificate it signed.
  std::string ca_file;
  /// PEM certificate (chain) and private key of this end.
  std::string cert_file;
  std::string key_file;
  /// Clients: the name the server certificate must carry (DNS name or IP
  /// address); empty: the HOST of the pipe name.
  std::string server_name;
  /// Pre-shared keys. A client offers the first; a gateway accepts any of them.
  std::vector<psk_key> psk;
  /// Plaintext TCP, no authentication, no encryption: only when both ends ask.
  bool insecure = false;
};

/// Options for opening a client end (Win32 CreateFile + SetNamedPipeHandleState).
struct client_options {
  // Not an aggregate, on purpose: g++ 12 destroys an aggregate temporary with
  // a destructor twice when it appears in a co_await expression, so
  // `co_await c.async_connect(name, npipe::client_options{}, t, use_awaitable)`
  // crashed ("free(): invalid pointer"); `client_options{}` is now a plain
  // value-initialisation, which it compiles correctly.
  client_options() = default;

  /// Read mode; defaults to message for message pipes and byte for byte pipes.
  std::optional<npipe::read_mode> read_mode;
  /// Largest message this client accepts.
  std::size_t max_message_size = defaults::max_message_size;
  /// Refuse the server unless it runs as this user (Linux uid). Protects
  /// against a squatter that took the name first.
  std::optional<std::uint32_t> require_server_uid;
  /// Linux: directory holding the socket files (as server_options::pipe_dir).
  std::string pipe_dir;
  /// Remote pipes (`\\HOST\pipe\NAME`): how to secure the link to HOST's gateway.
  tls_options tls;
};

} // namespace npipe
