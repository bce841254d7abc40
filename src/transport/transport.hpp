// SPDX-License-Identifier: MIT
#pragma once
// The transport seam. Every kind of pipe end (Linux local sockets, Win32
// named pipes, TCP/TLS for remote pipes) implements connection_impl and
// server_impl; the public classes only forward to them.

#include <npipe/connection.hpp>
#include <npipe/server.hpp>

#include "core/error_detail.hpp"

#include <chrono>
#include <cstdint>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace npipe::detail {

class admission_queue;
struct admitted_client;
using clock = std::chrono::steady_clock;

/// An absolute point in time after which a blocking call gives up.
struct deadline {
  clock::time_point at = clock::time_point::max();

  static deadline after(timeout t) {
    if (t < timeout::zero()) return {};
    return {clock::now() + t};
  }
  bool never() const noexcept { return at == clock::time_point::max(); }
  bool passed() const noexcept { return !never() && clock::now() >= at; }
  /// Milliseconds left for poll(): -1 for never, rounded up, at least 0.
  int poll_ms() const noexcept;
  /// What is left as a timeout (forever for never).
  timeout remaining() const noexcept;
  friend deadline earlier(deadline a, deadline b) noexcept { return a.at < b.at ? a : b; }
};

/// One connected pipe end: framed_connection (Linux local pipes and remote
/// pipes, over any byte_stream) and the Win32 pipe end implement it; the
/// public npipe::connection forwards to it after checking its own state.
/// What every implementation keeps (the public semantics are in
/// include/npipe/connection.hpp; this is what the seam adds):
///
/// - Blocking: a call with a deadline waits for the peer at most until it
///   (a deadline that never passes waits as long as it takes) and then fails
///   with timed_out, having consumed nothing (reads) or sent nothing, or, a
///   write that had sent part of a message, having broken the send side.
///   Known exceptions, where a call waits for the other side's lock rather
///   than for the peer: a framed read-side call that answers a peer's flush
///   frame takes tx_mu_ and so waits behind a write blocked on a full
///   socket; the Win32 end's peek takes rx_mu_ (behind a blocked read) and
///   set_read_mode takes tx_mu_.
/// - Threads: one read-side call (read, receive, peek) may run beside one
///   write-side call (write, flush). transact writes and then reads, each
///   under its own side's lock. Each implementation locks its two sides
///   (framed_connection's rx owner and tx_mu_, the Win32 end's rx_mu_ and
///   tx_mu_), so overlapping calls the public contract forbids wait rather
///   than corrupt it. close() may run on any thread at any time, once or
///   many times, and every later call fails with not_connected. It wakes
///   the calls blocked on the peer, which then fail with not_connected,
///   except (known, not yet fixed) where close() itself must take a lock a
///   blocked call holds: the framed end answering a buffered flush frame on
///   close waits for tx_mu_, and the Win32 client's flush without a
///   deadline (a synchronous FlushFileBuffers) holds both locks.
/// - Errors: through `ec` with a detail (set_error_detail) saying what
///   happened and what to do; nothing throws except std::bad_alloc for the
///   caller's own results (receive, transact). An allocation the peer caused
///   that fails ends this connection only (no_memory_error()).
/// - The peer controls every byte that arrives: nothing is allocated from a
///   length it sent before the bytes themselves arrive, within the receive
///   limit (core/framing.hpp keeps these rules for the framed ends).
/// - type(), peer(), name() and peer_max_message_size() are fixed at
///   construction and safe from any thread.
class connection_impl {
public:
  virtual ~connection_impl() = default;
  /// Not closed by this process (calls then fail with not_connected).
  virtual bool is_open() const noexcept = 0;
  /// No longer usable both ways: a write broke the send side, or npipe ended
  /// the stream. connection::is_open() is is_open() && !broken().
  virtual bool broken() const noexcept { return false; }
  virtual pipe_type type() const noexcept = 0;
  /// Safe from any thread.
  virtual npipe::read_mode read_mode() const noexcept = 0;
  /// invalid_argument (pipe_rules::message_mode_needs_message_pipe) for
  /// message mode on a byte pipe; does not wait for the peer (see Blocking).
  virtual void set_read_mode(npipe::read_mode m, std::error_code& ec) noexcept = 0;
  /// All of `data` as one message, or as bytes on a byte pipe; returns when
  /// the kernel has it. Over peer_max_message_size(): message_too_large,
  /// nothing sent.
  virtual void write(std::span<const std::byte> data, deadline dl, std::error_code& ec) noexcept = 0;
  /// ReadFile: message mode at most one message (more_data when `buf` is
  /// short, and ec stays clear); byte mode what is there, at least one byte.
  virtual read_result read(std::span<std::byte> buf, deadline dl, std::error_code& ec) noexcept = 0;
  /// One whole message (byte mode: what is there); over this end's limit:
  /// message_too_large, and the connection ends.
  virtual std::vector<std::byte> receive(deadline dl, std::error_code& ec) = 0;
  /// TransactNamedPipe: the preconditions of pipe_rules::transact_refusal,
  /// then write and receive; a reply that comes after the deadline is
  /// discarded when it does (pipe_rules::reply_debt), never handed to a
  /// later call.
  virtual std::vector<std::byte> transact(std::span<const std::byte> request, deadline dl, std::error_code& ec) = 0;
  /// PeekNamedPipe: consumes nothing and does not wait for the peer (see
  /// Blocking for the locks it may wait on).
  virtual peek_result peek(std::span<std::byte> buf, std::error_code& ec) noexcept = 0;
  /// FlushFileBuffers: returns once the peer has read everything written
  /// before it (or at the deadline: timed_out; the peer's going: broken_pipe).
  virtual void flush(deadline dl, std::error_code& ec) noexcept = 0;
  virtual void close() noexcept = 0;
  virtual const peer_identity& peer() const noexcept = 0;
  virtual const pipe_name& name() const noexcept = 0;
  virtual std::size_t peer_max_message_size() const noexcept = 0;
  /// What connection::native_handle() gives: the socket fd (Linux, a local
  /// or a remote connection's), the pipe HANDLE (Windows), or -1 where the
  /// stream has none (a test's in-memory stream). Fixed at construction,
  /// safe from any thread; still owned here.
  virtual std::intptr_t native_handle() const noexcept = 0;
};

/// One listening pipe name (posix_server, win32_server).
///
/// - open (in each system's open_local_server) checks the options, takes the
///   name (or fails with name_in_use; a crashed server's is reclaimed),
///   and starts admitting: each client is checked (handshake, access policy,
///   caps) off the caller's thread where the system allows, so a client that
///   never speaks delays nobody.
/// - Threads: accept() may be called from several threads at once; close()
///   from any thread, any number of times; is_open(), native_path() and
///   active_instances() from any thread.
/// - accept(dl) blocks until an admitted client is there (its connection),
///   the deadline passes (timed_out) or the server closes (operation_aborted).
/// - close() stops admitting, wakes every accept(), gives the name back
///   (Linux: removes the socket file it made, not one another server made
///   since; Windows: the name lives on while connections it handed out hold
///   instances, so a new server gets name_in_use until they close) and does
///   not touch the connections it has handed out.
class server_impl {
public:
  virtual ~server_impl() = default;
  virtual std::unique_ptr<connection_impl> accept(deadline dl, std::error_code& ec) = 0;
  virtual void close() noexcept = 0;
  virtual bool is_open() const noexcept = 0;
  virtual std::string native_path() const = 0;
  /// Instances in use: connected clients that hold one (until they close).
  virtual unsigned active_instances() const noexcept = 0;
  /// What server::native_handle() gives: clients().native_handle(), a
  /// descriptor (Linux: an eventfd; Windows: an event) that is readable or
  /// signalled exactly while accept() would not wait (a client is ready, or
  /// the server is closed), owned by the server, made on the first call.
  virtual std::intptr_t native_handle(std::error_code& ec) const noexcept = 0;
  /// Where admitted clients wait to be taken; accept() takes from it, the
  /// async server takes all (take_all) when woken. Lives as long as the server.
  virtual admission_queue& clients() noexcept = 0;

  // Accepting on the caller's own threads (a server opened with
  // caller_accepts; Linux): the async runtime waits for the listening
  // socket on its I/O threads, so a client whose hello came with its
  // connect is admitted there, without a hop through the admission thread.
  /// A new descriptor of the listening socket (the caller's to close), to
  /// wait on for readability; -1 where there is none (Windows, or not
  /// opened with caller_accepts).
  virtual std::intptr_t listen_handle() const noexcept { return -1; }
  /// On readability: accepts what is queued (up to a batch) on this thread.
  /// A client whose hello is there is checked and admitted here, into
  /// `batch` (the caller's: it accepted them, on its own thread; they never
  /// join clients()); one that must wait (its hello unfinished, no free
  /// instance) goes to the admission thread, which queues it in clients()
  /// once admitted. Never blocks. Returns how long to pause before waiting
  /// again (out of descriptors), else zero. Nothing once the server is closed.
  virtual std::chrono::milliseconds accept_ready(std::vector<admitted_client>& batch) {
    (void)batch;
    return {};
  }
  /// The caller cannot wait for listen_handle() (it could not be set up, or
  /// its wait failed): the admission thread accepts from now on.
  virtual void accept_on_own_thread() noexcept {}
};

/// What the handshake settled for one connected end.
struct connection_params {
  pipe_name name;
  pipe_type type = pipe_type::message;
  npipe::read_mode mode = npipe::read_mode::message;
  std::size_t max_message = defaults::max_message_size;      ///< what this end accepts
  std::size_t peer_max_message = defaults::max_message_size; ///< what the peer accepts
  /// Most this end queues on the peer's behalf (acknowledgements it owes)
  /// before it stops reading the peer (async_server_options::max_queued_bytes;
  /// the async server sets it on each client it adopts).
  std::size_t max_queued = defaults::max_queued_bytes;
  peer_identity peer;
  std::vector<std::byte> initial;                            ///< bytes already read past the handshake
  std::uint64_t sent_before = 0; ///< bytes of frames this end sent with its handshake (a pipelined request)
  std::function<void()> on_close;                            ///< e.g. free a server instance
};

/// A client the server admitted: its connected socket (or pipe handle) and
/// the settled parameters. Whoever holds it owns the handle and the instance:
/// dropped untaken, it closes the handle and frees the instance (on_close).
struct admitted_client {
  admitted_client() = default;
  admitted_client(std::intptr_t h, connection_params p) noexcept : handle(h), params(std::move(p)) {}
  admitted_client(admitted_client&& o) noexcept : handle(std::exchange(o.handle, -1)), params(std::move(o.params)) {}
  admitted_client& operator=(admitted_client&& o) noexcept {
    if (this != &o) {
      drop();
      handle = std::exchange(o.handle, -1);
      params = std::move(o.params);
    }
    return *this;
  }
  ~admitted_client() { drop(); }
  explicit operator bool() const noexcept { return handle != -1; }
  /// The handle, now the caller's (with params.on_close, to run when done).
  std::intptr_t release() noexcept { return std::exchange(handle, -1); }

  std::intptr_t handle = -1;
  connection_params params;

private:
  void drop() noexcept;
};
/// A seam handle (-1 for none) as the public native_handle_type.
inline native_handle_type to_native_handle(std::intptr_t h) noexcept {
#ifdef _WIN32
  return reinterpret_cast<native_handle_type>(h);
#else
  return static_cast<native_handle_type>(h);
#endif
}
/// Close an admitted client's handle (a socket fd, or a Win32 pipe handle).
void close_native_handle(std::intptr_t h) noexcept;
/// The error for an allocation a peer caused that failed (ENOMEM, or
/// ERROR_NOT_ENOUGH_MEMORY on Windows): it ends that peer's connection only.
std::error_code no_memory_error() noexcept;

/// An invalid option: sets invalid_argument and a detail naming the field,
/// its value and what is allowed ("server_options::max_instances is 0;
/// allowed: 1..255 (255: unlimited)"). Returns false.
bool option_out_of_range(const char* field, long long value, const std::string& allowed, std::error_code& ec);
/// The option checks every server backend makes first (with the detail).
bool check_server_options(const server_options& o, std::error_code& ec);
/// check_server_options, and the fields only the async server has.
bool check_async_server_options(const async_server_options& o, std::error_code& ec);
/// What both servers' open() checks before their options: not open already,
/// and a name that is local (sets the error and its detail).
bool check_server_open(bool already_open, const pipe_name& name, std::error_code& ec);
/// The same for clients (every connect, local or remote, blocking or async).
bool check_client_options(const client_options& o, std::error_code& ec);

/// Local pipes, implemented per system: the server in local_posix.cpp and
/// local_win32.cpp, the client in client_posix.cpp and client_win32.cpp.
/// Admitted clients go to the server's admission_queue (clients()), which
/// accept() and native_handle() serve; `wake`, if set, is called after each
/// client joins it (the async server takes them from there). With
/// caller_accepts, the caller also accepts (listen_handle, accept_ready)
/// where the system allows it (Linux), and the admission thread only
/// serves the clients that must wait.
std::shared_ptr<server_impl> open_local_server(const pipe_name& name, const server_options& opts,
                                               std::error_code& ec, std::function<void()> wake = {},
                                               bool caller_accepts = false);
/// `first`, if not empty, is sent as the first message together with the
/// handshake (CallNamedPipe saves a round trip this way); callers keep it
/// within pipelined_request_max, which every server accepts.
std::unique_ptr<connection_impl> connect_local(const pipe_name& name, const client_options& opts, deadline dl,
                                               std::error_code& ec, std::span<const std::byte> first = {});
inline constexpr std::size_t pipelined_request_max = 4096;

} // namespace npipe::detail
