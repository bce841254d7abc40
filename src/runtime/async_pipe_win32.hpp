// SPDX-License-Identifier: MIT
#pragma once
// Windows: one pipe end driven by Asio on the I/O completion port. The
// handle is a genuine Win32 named pipe; every read, write and connect is an
// overlapped call whose completion Asio delivers (windows::overlapped_ptr),
// so message boundaries, ERROR_MORE_DATA and zero-length messages are the
// kernel's. Everything runs on the end's strand; the entry points in
// async_api.cpp post there. The entry points both systems share (create,
// receive, read_some, send, transact, flush, cancel, close) and their rules are
// async_pipe_base's (async_op.hpp); this class has the I/O.
//
// Reads happen only for a waiting receiver: what the pipe holds stays in
// the pipe (the writer's buffer fills: backpressure). A read that a
// timeout or cancel stops keeps whatever it got (`held_`), so the next
// receive continues the message. One write and one read are outstanding at
// a time, each with its own OVERLAPPED, so a deadline cancels exactly it
// (CancelIoEx). FlushFileBuffers has no overlapped form: it runs on a
// helper thread (background_flush) that the deadline cancels.

#include "core/pipe_rules.hpp"
#include "runtime/async_op.hpp"
#include "transport/transport.hpp"

#include <npipe/async.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(steady_timer.hpp)
#include NPIPE_NET_HEADER(strand.hpp)
#include NPIPE_NET_HEADER(windows/stream_handle.hpp)

#include <atomic>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace npipe::detail {

class background_flush;

struct async_pipe_op;

class async_pipe final : public async_pipe_base<async_pipe, async_pipe_op> {
public:
  explicit async_pipe(const net::any_io_executor& ex);
  ~async_pipe() override;
  void abandon() noexcept override;
  async_pipe(const async_pipe&) = delete;
  async_pipe& operator=(const async_pipe&) = delete;

  // The rest runs on strand() only (the thread-safe part is async_pipe_common).

  /// Take over a connected server instance (a HANDLE) the server admitted.
  bool adopt(std::intptr_t handle, connection_params p, std::error_code& ec);
  void connect(pipe_name name, client_options opts, timeout t, detail::cancellation_slot slot, completion<> done);
  /// Nothing received and unread, nothing queued to send.
  bool quiet() const noexcept;
  /// The peer closed the pipe in the middle of a message.
  bool eof_mid_message() const noexcept { return eof_ && held_ && held_->more; }
  /// Bytes queued to send and not yet taken by the pipe.
  std::size_t queued_bytes() const noexcept { return tx_bytes_; }

private:
  template <class Pipe>
  friend void start_deadline(Pipe& pipe, async_op& o, clock::time_point at);
  template <class Pipe>
  friend void arm_op(Pipe& pipe, async_op& o, timeout t, detail::cancellation_slot& slot);
  friend class async_pipe_base<async_pipe, async_pipe_op>;
  using op = async_pipe_op;
  struct connecting;
  // Bytes read off the pipe that no receiver has taken yet: the head of one
  // message (`more`: its rest is still in the pipe) or, in byte read mode,
  // a run of bytes.
  struct held_bytes {
    std::vector<std::byte> data;
    std::size_t off = 0;
    bool more = false;
  };

  // What async_pipe_base asks of a system (async_op.hpp).
  void end_op(std::uint64_t id, errc why);
  std::error_code size_refusal(std::size_t size, std::string& detail) const;
  void queue_message(std::unique_ptr<op> o, std::span<const std::byte> data, std::vector<std::byte> owned);
  void queue_request(std::unique_ptr<op> o);
  bool unread();
  void queue_flush(std::unique_ptr<op> o);
  static std::size_t queued_cost(const op& o) noexcept;
  void abort_io(std::error_code why, const std::string& detail);
  void before_close();
  void release_io();
  bool begun(const op& o) const noexcept;

  HANDLE native() noexcept { return handle_.native_handle(); }
  std::error_code pipe_error(DWORD e, std::string& detail) const;
  void init_open(HANDLE h, connection_params p);

  // receiving
  void kick_once();
  bool serve_reader(op& o);
  void start_read(op& o);
  void on_read(const std::error_code& ec, std::size_t n);
  void rx_fail(std::error_code ec, std::string detail);

  // sending
  void queue_write(std::unique_ptr<op> o);
  void start_tx();
  void on_written(const std::error_code& ec, std::size_t n);
  void on_flushed(DWORD err);
  void stop_flush(std::error_code why, const std::string& detail);
  void fail_writes(std::error_code ec, const std::string& detail);

  // connecting
  void connect_attempt();
  void fail_connect(std::error_code ec, std::string detail);

  net::windows::stream_handle handle_;

  // receive side
  std::optional<held_bytes> held_;
  bool rx_active_ = false;       // a ReadFile is outstanding (into held_->data)
  OVERLAPPED* rx_ov_ = nullptr;  // its OVERLAPPED, for CancelIoEx
  std::size_t rx_base_ = 0;      // where in held_->data it writes
  bool eof_ = false;
  std::error_code rx_err_;
  std::string rx_detail_;

  // send side (writes_, in the base: sends and flushes, in order; the head is in progress)
  OVERLAPPED* tx_ov_ = nullptr;
  std::unique_ptr<background_flush> flusher_;
  std::uint64_t flush_gen_ = 0; // which flush a helper's posted result belongs to

  std::unique_ptr<connecting> conn_;
};

// Instantiated once, in async_receive_win32.cpp.
extern template class async_pipe_base<async_pipe, async_pipe_op>;

} // namespace npipe::detail
