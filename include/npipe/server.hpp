// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// The server end: creates a named pipe and accepts clients.

#include <npipe/export.h>
#include <npipe/connection.hpp>
#include <npipe/options.hpp>
#include <npipe/pipe_name.hpp>

#include <memory>
#include <string>
#include <system_error>
#include <type_traits>

namespace npipe {

namespace detail {
class server_impl;
}

/// A named pipe server (CreateNamedPipe + ConnectNamedPipe).
///
/// Once open, the name is live: clients can connect even before accept() is
/// called, up to `max_instances` at once; later clients get pipe_busy or
/// wait, as they asked. A background thread completes handshakes so a slow
/// client never blocks accept() or another client.
///
/// Opening fails with name_in_use if a live server holds the name (the error
/// message names its pid and uid). A socket file left behind by a dead server
/// is reclaimed safely.
///
/// Thread safety: accept() may be called from several threads; close() from
/// any thread, and it wakes accept() callers with operation_aborted.
class NPIPE_API server {
public:
  server() noexcept;
  /// Open at once. @throws std::system_error
  explicit server(const pipe_name& name, const server_options& opts = {});
  server(server&&) noexcept;
  server& operator=(server&&) noexcept;
  ~server();

  /// Create the pipe and start listening.
  void open(const pipe_name& name, const server_options& opts, std::error_code& ec) noexcept;
  void open(const pipe_name& name, const server_options& opts = {});

  /// async_server_options are async_server's: their own fields would be
  /// dropped here without a word, so giving them to a server does not compile.
  template <class O>
    requires std::is_same_v<O, async_server_options>
  explicit server(const pipe_name&, const O&) = delete;
  template <class O>
    requires std::is_same_v<O, async_server_options>
  void open(const pipe_name&, const O&, std::error_code&) = delete;
  template <class O>
    requires std::is_same_v<O, async_server_options>
  void open(const pipe_name&, const O&) = delete;

  bool is_open() const noexcept;

  /// Wait for the next client (ConnectNamedPipe). Errors: timed_out,
  /// operation_aborted (closed); on Windows also the OS error when the
  /// server could not make or listen on a pipe instance (it keeps trying).
  connection accept(timeout t, std::error_code& ec);
  connection accept(std::error_code& ec) { return accept(forever, ec); }
  connection accept(timeout t = forever);

  /// Stop listening, remove the name, and close clients not yet accepted.
  /// Accepted connections stay open. Idempotent; never throws.
  void close() noexcept;

  const pipe_name& name() const noexcept;
  const server_options& options() const noexcept;
  /// Where the pipe lives: the socket file path on Linux, `\\.\pipe\NAME` on Windows.
  std::string native_path() const;
  /// Clients connected now (accepted or waiting to be accepted).
  unsigned active_instances() const noexcept;

  /// A handle that is ready exactly while accept() would not wait — a
  /// client is ready, an admission error is to be reported, or the server
  /// was closed (accept() then fails with operation_aborted) — for another event loop to wait on before
  /// accept(no_wait): on Linux an eventfd (wait for readability), on
  /// Windows an event (WaitForSingleObject, MsgWaitForMultipleObjects,
  /// QWinEventNotifier). The server's own: never read, write, set, reset or
  /// close it; valid until the server is destroyed or assigned to (it stays
  /// ready after close()). Fails with not_connected when the server was
  /// never opened. docs/native-handles.md has the contract.
  native_handle_type native_handle(std::error_code& ec) const noexcept;
  native_handle_type native_handle() const;

private:
  std::shared_ptr<detail::server_impl> impl_;
  pipe_name name_;
  server_options opts_;
};

} // namespace npipe
