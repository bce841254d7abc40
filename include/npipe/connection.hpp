// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// One end of a connected pipe, and the client entry points connect() and call().

#include <npipe/export.h>
#include <npipe/error.hpp>
#include <npipe/options.hpp>
#include <npipe/pipe_name.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace npipe {

namespace detail {
class connection_impl;
}

/// Who is at the other end (Win32 GetNamedPipeClientProcessId and friends).
/// On Linux taken from SO_PEERCRED at connect time. On Windows a server
/// learns its client's user by impersonating it (ImpersonateNamedPipeClient:
/// npipe clients open with SECURITY_IDENTIFICATION, plain Win32 clients
/// allow it by default); a client learns its server's from the server
/// process's token (GetNamedPipeServerProcessId), which it can read when the
/// server runs as the same user or the client is an administrator; else
/// `user` and `sid` stay empty.
struct peer_identity {
  std::int64_t pid = -1;  ///< process id, -1 if unknown
  std::int64_t uid = -1;  ///< user id (Linux), -1 if unknown
  std::int64_t gid = -1;  ///< primary group id (Linux), -1 if unknown
  std::string user;       ///< account name ("alice", on both systems), may be empty;
                          ///< for a remote peer its TLS identity (see remote_address)
  /// A peer on another machine, reached through a gateway (remote.hpp): where
  /// it connects from ("192.0.2.7:50123", "[2001:db8::1]:50123"); empty for a
  /// local peer. For a remote peer pid, uid and gid are -1 and `user` is its
  /// TLS identity: the certificate subject ("CN=alice,O=example"), "psk:ID"
  /// for a pre-shared key, or "insecure" on a plaintext link. On the client
  /// side of a remote connection `user` is the server's TLS identity.
  std::string remote_address;
  /// Windows: the user's SID as a string ("S-1-5-21-..."), may be empty.
  /// Empty on Linux (uid says who) and for a remote peer.
  std::string sid;
  bool is_remote() const noexcept { return !remote_address.empty(); }
};

/// The operating system's handle under a pipe end or a server: a file
/// descriptor on Linux, a HANDLE on Windows (see connection::native_handle
/// and server::native_handle).
#ifdef _WIN32
using native_handle_type = void*;
#else
using native_handle_type = int;
#endif

/// Result of a partial read (Win32 ReadFile on a pipe).
struct read_result {
  std::size_t bytes = 0;  ///< bytes stored in the buffer
  bool more_data = false; ///< message mode: the message goes on; read again for the rest
};

/// Result of peek() (Win32 PeekNamedPipe). Never blocks.
struct peek_result {
  std::size_t bytes_read = 0;         ///< bytes copied into the caller's buffer
  std::size_t total_available = 0;    ///< payload bytes ready to read now
  std::size_t left_this_message = 0;  ///< message mode: unread bytes of the current message
};

/// A connected pipe end, on the client or the server side.
///
/// Blocking calls come in three forms, for bytes and for text:
/// `f(args, timeout, ec)`, `f(args, ec)` (no time limit) and
/// `f(args, timeout = forever)` (throws std::system_error). A timed-out read
/// keeps the connection usable; a write that times out after sending part of
/// a message breaks the connection, since the peer would otherwise see a
/// torn message.
///
/// Errors: a call on an end this process has closed (close(), from any
/// thread, also one that wakes a blocked call) fails with not_connected; a
/// call that finds the peer gone fails with broken_pipe.
///
/// Thread safety: one thread may read while another writes; two concurrent
/// readers or two concurrent writers are not allowed. close() may be called
/// from any thread to unblock the others.
class NPIPE_API connection {
public:
  connection() noexcept;
  explicit connection(std::unique_ptr<detail::connection_impl> impl) noexcept;
  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;
  ~connection();

  /// True while this end can be used both ways, as far as it knows: false
  /// once it is closed (close(), moved from, never connected), once a write
  /// broke the send side (it failed on the pipe, or timed out after sending
  /// part of a message; a timeout that sent nothing and a message refused as
  /// too large leave it open), or once npipe ended the stream (the peer broke
  /// the protocol, or sent a message over this end's limit). It says nothing
  /// new about the peer: a peer that has gone is found by the next call
  /// (broken_pipe), and a read that finds it gone does not change it. An end
  /// whose send side is broken still reads what had arrived from the peer;
  /// its writes fail with broken_pipe. The same on Linux, through a gateway
  /// and on Windows, and for async_connection.
  bool is_open() const noexcept;
  explicit operator bool() const noexcept { return is_open(); }

  /// The pipe's type as chosen by the server.
  pipe_type type() const noexcept;
  /// This end's read mode.
  npipe::read_mode read_mode() const noexcept;
  /// Switch this end's read mode (SetNamedPipeHandleState). Message read
  /// mode on a byte pipe fails with invalid_argument.
  void set_read_mode(npipe::read_mode m, std::error_code& ec) noexcept;
  void set_read_mode(npipe::read_mode m);

  /// Write all of `data` as one message (message pipe) or as bytes (byte
  /// pipe). Returns when the data is handed to the kernel. A message larger
  /// than the peer's limit fails with message_too_large and nothing is sent.
  void write(std::span<const std::byte> data, timeout t, std::error_code& ec) noexcept;
  void write(std::span<const std::byte> data, std::error_code& ec) noexcept { write(data, forever, ec); }
  void write(std::span<const std::byte> data, timeout t = forever);
  void write(std::string_view text, timeout t, std::error_code& ec) noexcept {
    write(std::as_bytes(std::span(text)), t, ec);
  }
  void write(std::string_view text, std::error_code& ec) noexcept { write(std::as_bytes(std::span(text)), forever, ec); }
  void write(std::string_view text, timeout t = forever) { write(std::as_bytes(std::span(text)), t); }

  /// Read into `buf` (ReadFile). Message read mode: returns at most one
  /// message; if `buf` is too small it is filled and read_result::more_data
  /// is true: like ERROR_MORE_DATA, the rest comes with the next read. That
  /// is not a failure: `ec` stays clear (and the throwing form does not
  /// throw), as in async_read_some(), so a loop is
  /// `do { r = c.read(buf, ec); if (ec) break; ... } while (r.more_data);`.
  /// Byte read mode: returns what is available (at least one byte), ignoring
  /// boundaries.
  read_result read(std::span<std::byte> buf, timeout t, std::error_code& ec) noexcept;
  read_result read(std::span<std::byte> buf, std::error_code& ec) noexcept { return read(buf, forever, ec); }
  read_result read(std::span<std::byte> buf, timeout t = forever);

  /// Receive one whole message (message read mode) or the bytes available
  /// (byte read mode). A message larger than this end's limit fails with
  /// message_too_large before anything is allocated, and closes the connection.
  std::vector<std::byte> receive(timeout t, std::error_code& ec);
  std::vector<std::byte> receive(std::error_code& ec) { return receive(forever, ec); }
  std::vector<std::byte> receive(timeout t = forever);
  /// receive() as text.
  std::string receive_string(timeout t, std::error_code& ec);
  std::string receive_string(std::error_code& ec) { return receive_string(forever, ec); }
  std::string receive_string(timeout t = forever);

  /// Write `request` and receive the reply message (TransactNamedPipe).
  /// Needs a message pipe in message read mode and nothing unread.
  std::vector<std::byte> transact(std::span<const std::byte> request, timeout t, std::error_code& ec);
  std::vector<std::byte> transact(std::span<const std::byte> request, std::error_code& ec) {
    return transact(request, forever, ec);
  }
  std::vector<std::byte> transact(std::span<const std::byte> request, timeout t = forever);
  std::string transact(std::string_view request, timeout t, std::error_code& ec);
  std::string transact(std::string_view request, std::error_code& ec) { return transact(request, forever, ec); }
  std::string transact(std::string_view request, timeout t = forever);

  /// Look at what is waiting without consuming it (PeekNamedPipe). Copies up
  /// to `buf.size()` bytes (message mode: from the current message only).
  peek_result peek(std::span<std::byte> buf, std::error_code& ec) noexcept;
  peek_result peek(std::span<std::byte> buf = {});

  /// Wait until the peer has read everything written so far
  /// (FlushFileBuffers). The same guarantee on every transport: it returns
  /// once the peer process has taken every byte written before the call —
  /// locally off the socket, on Windows out of the pipe, through a gateway
  /// into its application (its npipe library says so as soon as its
  /// application has consumed them) — and it does not wait for the peer
  /// application's next call once the peer has them. While the peer has not
  /// read them it waits (at most `t`: timed_out, the data stays queued); a
  /// peer that closes first without reading makes it fail with broken_pipe.
  void flush(timeout t, std::error_code& ec) noexcept;
  void flush(std::error_code& ec) noexcept { flush(forever, ec); }
  void flush(timeout t = forever);

  /// Close this end (on a server: DisconnectNamedPipe; the instance is free
  /// for the next client). Idempotent; never throws.
  void close() noexcept;

  /// Who is at the other end.
  const peer_identity& peer() const noexcept;
  /// The pipe this connection belongs to.
  const pipe_name& name() const noexcept;
  /// Largest message the peer accepts (from the handshake).
  std::size_t peer_max_message_size() const noexcept;

  /// The handle under this end, to wait on in another event loop (Qt,
  /// GLib, libuv, asyncio): the connected socket on Linux (also for a
  /// remote pipe), the pipe HANDLE on Windows. It stays npipe's: never read,
  /// write, close or reconfigure it. On Linux, once it is readable a call
  /// with no_wait does not block; read with no_wait until timed_out before
  /// waiting again, since npipe may hold bytes it already took off the
  /// socket. docs/native-handles.md has the whole contract. Fails with
  /// not_connected when this object holds no open end; the handle is valid
  /// until the connection is destroyed or assigned to.
  native_handle_type native_handle(std::error_code& ec) const noexcept;
  native_handle_type native_handle() const;

private:
  std::unique_ptr<detail::connection_impl> impl_;
};

/// Open a client end (CreateFile + WaitNamedPipe). If every instance is
/// taken, waits up to `t` for one to free (no_wait: fail at once with
/// pipe_busy; the error_code form without `t` waits as long as it takes, as
/// NMPWAIT_WAIT_FOREVER). No server at all fails at once with not_found.
/// The throwing form waits defaults::connect_timeout unless told otherwise
/// (NMPWAIT_USE_DEFAULT_WAIT).
NPIPE_API connection connect(const pipe_name& name, const client_options& opts, timeout t, std::error_code& ec);
NPIPE_API connection connect(const pipe_name& name, const client_options& opts, std::error_code& ec);
NPIPE_API connection connect(const pipe_name& name, const client_options& opts = {}, timeout t = defaults::connect_timeout);

/// Connect, transact once, close (CallNamedPipe). `t` bounds the whole call;
/// the error_code form without `t` has no time limit, the throwing form
/// defaults to defaults::connect_timeout.
NPIPE_API std::vector<std::byte> call(const pipe_name& name, std::span<const std::byte> request, timeout t,
                            std::error_code& ec, const client_options& opts = {});
NPIPE_API std::vector<std::byte> call(const pipe_name& name, std::span<const std::byte> request, std::error_code& ec,
                            const client_options& opts = {});
NPIPE_API std::vector<std::byte> call(const pipe_name& name, std::span<const std::byte> request,
                            timeout t = defaults::connect_timeout, const client_options& opts = {});
NPIPE_API std::string call(const pipe_name& name, std::string_view request, timeout t, std::error_code& ec,
                 const client_options& opts = {});
NPIPE_API std::string call(const pipe_name& name, std::string_view request, std::error_code& ec, const client_options& opts = {});
NPIPE_API std::string call(const pipe_name& name, std::string_view request, timeout t = defaults::connect_timeout,
                 const client_options& opts = {});

} // namespace npipe
