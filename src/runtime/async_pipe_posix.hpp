// SPDX-License-Identifier: MIT
#pragma once
// Linux: one pipe end driven by Asio: npipe framing (docs/protocol.md) over a
// byte stream (async_stream: a Unix socket, TCP, or TLS over TCP), with queued sends, queued receives, flush acknowledgements,
// per-operation timeouts and cancellation. Everything runs on the end's
// strand; the entry points in async_api.cpp post there. The entry points
// both systems share (create, receive, read_some, send, transact, flush, cancel, close) and
// their rules are async_pipe_base's (async_op.hpp); this class has the I/O.
//
// Receiving reads ahead by at most one message (plus what one 64 KiB read
// brings), so a consumer that stops receiving stops the reading: the
// sender's kernel buffer fills and it blocks (backpressure). An idle end
// holds no buffer, only a readiness wait.

#include "core/framing.hpp"
#include "core/pipe_rules.hpp"
#include "core/protocol.hpp"
#include "runtime/async_op.hpp"
#include "runtime/async_stream_posix.hpp"
#include "transport/transport.hpp"

#include <npipe/async.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(steady_timer.hpp)
#include NPIPE_NET_HEADER(strand.hpp)

#include <array>
#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace npipe::detail {

struct async_pipe_op;

class async_pipe final : public async_pipe_base<async_pipe, async_pipe_op> {
public:
  explicit async_pipe(const net::any_io_executor& ex);
  ~async_pipe() override;
  void abandon() noexcept override;
  async_pipe(const async_pipe&) = delete;
  async_pipe& operator=(const async_pipe&) = delete;

  // The rest runs on strand() only (the thread-safe part is async_pipe_common).

  /// Take over a connected socket the server admitted.
  bool adopt(std::intptr_t fd, connection_params p, std::error_code& ec);
  void connect(pipe_name name, client_options opts, timeout t, detail::cancellation_slot slot, completion<> done);
  /// Nothing received, nothing queued to send.
  bool quiet() const noexcept;
  /// The peer closed the pipe in the middle of a message.
  bool eof_mid_message() const noexcept { return eof_ && rd_.mid_frame(); }
  /// What is queued to send and not yet taken by the kernel, as the memory
  /// it takes (operations, payloads, acknowledgements owed).
  std::size_t queued_bytes() const noexcept { return tx_bytes_ + acks_owed_ * protocol::frame_header_size; }

private:
  template <class Pipe>
  friend void start_deadline(Pipe& pipe, async_op& o, clock::time_point at);
  template <class Pipe>
  friend void arm_op(Pipe& pipe, async_op& o, timeout t, detail::cancellation_slot& slot);
  friend class async_pipe_base<async_pipe, async_pipe_op>;
  using op = async_pipe_op;
  struct inbox_msg {
    std::vector<std::byte> data;
    std::size_t off = 0;
    std::size_t flushes = 0; // a flush marker (for this many flushes in a row): acknowledge once
                             // everything before it is read
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
  std::uint64_t unfinished_send() const noexcept;

  // receiving
  void kick_once();
  void deliver();
  bool serve_reader(op& o);
  void settle_debt();
  bool inbox_has_data() const noexcept;
  std::vector<std::byte> take_message();
  std::size_t take_bytes(std::byte* out, std::size_t n, bool one_message, bool& more);
  void pop_front_msg();
  void ack_leading_flushes();
  bool rx_wanted() const noexcept;
  void start_rx();
  void on_readable(const std::error_code& ec);
  void read_available();
  void pull();
  void top_up(std::size_t want);
  void parse(const std::byte* data, std::size_t n);
  void end_message();
  void rx_fail(std::error_code ec, std::string detail);
  std::error_code rx_state_error(std::string& detail) const;

  // sending
  void queue_frame(protocol::frame_type t, std::unique_ptr<op> o);
  void start_tx();
  void on_tx(const std::error_code& ec, std::size_t n);
  void tear(std::vector<std::unique_ptr<op>> batch, const std::error_code& ec, std::size_t n = 0);
  void defer_receipt();
  void fail_writes(std::error_code ec, const std::string& detail);

  // connecting
  void connect_attempt();
  void on_connect(const std::error_code& ec);
  void on_reply_bytes(const std::error_code& ec, std::size_t n);
  void fail_connect(std::error_code ec, std::string detail);
  void begin_hello();
  void remote_connect();
  void dial_gateway();
  void redial_gateway();
  void init_open(connection_params p);

  async_stream stream_;                   // what the end reads and writes
  async_stream::socket_type& socket_;     // stream_'s socket
  std::string peer_name_;                 // a remote link: its far end, in messages ("the gateway at h:p")

  // receive side
  std::vector<inbox_msg> inbox_;
  std::size_t inbox_head_ = 0;
  std::size_t inbox_bytes_ = 0;
  std::size_t inbox_messages_ = 0; // data entries in the inbox (not flush markers): no scan to ask

  framing::reader rd_;           // where the peer's stream is
  std::vector<std::byte> msg_;   // the message being received (rd_.in_data()), grown as it arrives
  std::size_t msg_got_ = 0;      // its bytes so far
  bool rx_active_ = false;
  bool eof_ = false;
  std::error_code rx_err_;
  std::string rx_detail_;

  // send side
  std::vector<net::const_buffer> txbufs_;
  std::size_t tx_batch_ = 0;
  std::uint64_t tx_partial_ = 0; // a send whose first frames went in a finished write, its last not yet (0: none)
  std::size_t tx_acks_ = 0;      // acknowledgements in the write in progress
  std::uint64_t tx_offset_ = 0;  // bytes of our stream written
  std::uint64_t tx_receipt_ = 0; // the consumed offset in the write in progress (0: none)
  std::array<std::byte, protocol::frame_header_size + protocol::consumed_payload> receipt_frame_{};
  framing::receipts receipts_;   // what we tell a remote peer we consumed
  std::uint64_t receipt_due_ = 0; // a consumed offset to write (0: none)
  bool receipt_deferred_ = false; // it waits for a write to ride with, or for its own turn (defer_receipt)
  std::unique_ptr<net::steady_timer> receipt_timer_; // that turn; made for remote peers only
  std::size_t acks_owed_ = 0;    // flush acknowledgements to send (a count: they are all alike)

  // flush
  std::vector<std::unique_ptr<op>> flushers_;
  framing::flush_tracker flushes_; // our flushes, the peer's acknowledgements and receipts

  // connect
  struct connecting;
  std::unique_ptr<connecting> conn_;
};

// Instantiated once, in async_receive_posix.cpp.
extern template class async_pipe_base<async_pipe, async_pipe_op>;

} // namespace npipe::detail
