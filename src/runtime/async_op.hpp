// SPDX-License-Identifier: MIT
#pragma once
// What every async pipe end shares, on every system: its strand and
// thread-safe state (async_pipe_common), and what a pending operation is —
// its completion, its deadline and its hook into the caller's cancellation
// slot (async_op), and what both ends do alike over their own operation type
// (async_pipe_base). async_pipe_posix and async_pipe_win32 build on them.

#include "core/pipe_rules.hpp"
#include "runtime/registry.hpp"
#include "transport/transport.hpp"

#include <npipe/async.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(dispatch.hpp)
#include NPIPE_NET_HEADER(steady_timer.hpp)
#include NPIPE_NET_HEADER(strand.hpp)

#include <atomic>
#include <functional>
#include <span>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace npipe::detail {

/// The state of a pipe end that its users read from any thread, and its strand.
class async_pipe_common : public abandonable {
public:
  using strand_type = net::strand<net::any_io_executor>;

  strand_type& strand() noexcept { return strand_; }

  // Thread-safe.
  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }
  /// No longer usable both ways: a send broke the send side, the stream was
  /// ended here, or a close is on its way to the strand.
  /// async_connection::is_open() is is_open() && !broken().
  bool broken() const noexcept { return broken_.load(std::memory_order_acquire); }
  /// close() was asked for (it runs later, on the strand): is_open() says
  /// false from now on, as after a blocking close().
  void closing() noexcept { broken_.store(true, std::memory_order_release); }
  /// Fixed once connected (or adopted); read it after that.
  const connection_params& params() const noexcept { return p_; }
  npipe::read_mode mode() const noexcept { return mode_.load(std::memory_order_relaxed); }
  clock::time_point last_activity() const noexcept {
    return clock::time_point(clock::duration(activity_.load(std::memory_order_relaxed)));
  }

  /// Called once on the strand when the end closes (the server's registry).
  std::function<void()> on_closed;

protected:
  explicit async_pipe_common(const net::any_io_executor& ex) : strand_(net::make_strand(ex)) { touch(); }
  /// An end never closed on its strand (its context stopped first) still
  /// frees its server instance and its registry entry; runs after the
  /// derived end has closed its socket or handle.
  ~async_pipe_common() override {
    if (p_.on_close) p_.on_close();
    if (on_closed) on_closed();
  }
  void touch() noexcept { activity_.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed); }

  strand_type strand_;
  connection_params p_;
  std::atomic<npipe::read_mode> mode_{npipe::read_mode::message};
  std::atomic<bool> open_{false};
  std::atomic<bool> broken_{false};
  std::atomic<clock::rep> activity_{0};
  bool closed_ = false;     // on the strand
  std::uint64_t next_id_ = 1; // on the strand: operation ids
};

struct async_op {
  std::uint64_t id = 0;
  std::unique_ptr<net::steady_timer> timer;
  // receivers
  completion<std::vector<std::byte>> on_msg;
  completion<read_result> on_some;
  net::mutable_buffer buf;
  // senders
  completion<std::size_t> on_sent;
  std::size_t size = 0;                            // what on_sent reports: the whole send (a byte pipe's goes in pieces)
  net::const_buffer payload;
  std::vector<std::byte> owned;
  bool started = false;
  bool timed_out = false;                          // its deadline passed while it was being written
  bool cancelled = false;                          // a transact cancelled while its request was being written
  completion<std::vector<std::byte>> then_receive; // transact: the reply's receiver, queued once sent
  bool transact_reply = false;                     // a receiver waiting for a transact's reply
  // flushers and connects
  completion<> on_done;
};

/// Completes `o` with `ec` (and, on failure, `detail` for last_error_detail()),
/// whichever kind of operation it is.
void finish_op(async_op& o, std::error_code ec, const std::string& detail);

/// Ends `o` with timed_out at `at`: `pipe.end_op(id, errc::timed_out)` on
/// the pipe's strand, unless the pipe is gone or the timer is cancelled.
template <class Pipe>
void start_deadline(Pipe& pipe, async_op& o, clock::time_point at) {
  o.timer = std::make_unique<net::steady_timer>(pipe.strand(), at);
  o.timer->async_wait([w = pipe.weak_from_this(), id = o.id](const net_error_code& ec) {
    if (ec) return;
    if (auto self = w.lock()) self->end_op(id, errc::timed_out);
  });
}

/// Arms `o`'s timeout `t` (none if negative) and hooks the caller's
/// cancellation slot: a cancellation ends it with operation_aborted.
template <class Pipe>
void arm_op(Pipe& pipe, async_op& o, timeout t, detail::cancellation_slot& slot) {
  if (t >= timeout::zero()) start_deadline(pipe, o, clock::now() + t);
  if (slot.is_connected()) {
    slot.assign([w = pipe.weak_from_this(), id = o.id](detail::cancellation_type) {
      if (auto self = w.lock())
        net::dispatch(self->strand(), [self, id] { self->end_op(id, errc::operation_aborted); });
    });
  }
}

/// What both systems' async pipe ends do alike, over their own operation
/// type Op (an async_op; it may be incomplete here): making, arming and
/// completing operations, the receive and send entry points with their
/// preconditions, the queue of writes, a connect's preconditions, and
/// kick(). On the strand only, like Derived, except create().
///
/// Derived implements its I/O starts (private; the base is its friend):
///   void kick_once();            serve waiting receivers, read more if one still waits
///   void end_op(std::uint64_t id, errc why);   a deadline or a cancellation of `id`
///   std::error_code size_refusal(std::size_t size, std::string& detail) const;
///                                why a message of `size` bytes cannot go (none: it can)
///   void queue_message(std::unique_ptr<Op> o, std::span<const std::byte> data, std::vector<std::byte> owned);
///                                queue a checked send of `data` (into `owned`, if not empty)
///   void queue_request(std::unique_ptr<Op> o);   queue a checked transact's request (o->payload)
///   bool unread();               TransactNamedPipe's "a message is waiting": one not
///                                owed to a transact that gave up, or a queued receiver
///   void queue_flush(std::unique_ptr<Op> o);     queue a checked flush
///   static std::size_t queued_cost(const Op& o) noexcept;   what a queued write counts
///                                against the peer's cap (tx_bytes_)
///   void fail_connect(std::error_code ec, std::string detail);   end a connect under way (if one is)
///   void abort_io(std::error_code why, const std::string& detail);   end the operations only
///                                this system has (Linux: flushes waiting for their
///                                acknowledgement; Windows: a flush in progress)
///   bool begun(const Op& o) const noexcept;   whether a queued write has begun going
///                                out (Linux: also a later frame of a byte pipe's send)
///   void before_close();         what a close does while the pipe is still open
///   void release_io();           close the socket or handle and drop what was read
/// The member functions are in async_pipe_base_impl.hpp, instantiated once
/// per system where Op is complete (its receiving file).
template <class Derived, class Op>
class async_pipe_base : public async_pipe_common, public std::enable_shared_from_this<Derived> {
public:
  /// A new end, enrolled with its context's runtime_registry. Thread-safe.
  static std::shared_ptr<Derived> create(const net::any_io_executor& ex);

  /// Queue a receiver of one message (byte read mode: what the pipe holds,
  /// up to 64 KiB); it completes when one is there, at `t`, or on close.
  void receive(timeout t, detail::cancellation_slot slot, completion<std::vector<std::byte>> done);
  /// Queue a read into `buf` (more_data if a message goes on).
  void read_some(net::mutable_buffer buf, timeout t, detail::cancellation_slot slot, completion<read_result> done);
  /// Queue a send of one message (a byte pipe: of bytes); `owned`, if not
  /// empty, is the payload (and msg is ignored). It completes with the size
  /// once the pipe has taken all of it; not_connected, broken_pipe (an
  /// earlier send tore the stream), message_too_large (nothing sent), or
  /// timed_out / operation_aborted (nothing sent unless it had begun: then
  /// the stream is torn and later sends fail).
  void send(net::const_buffer msg, std::vector<std::byte> owned, timeout t, detail::cancellation_slot slot,
            completion<std::size_t> done);
  /// Send `request`, then receive its reply, under TransactNamedPipe's
  /// rules (pipe_rules::transact_refusal: invalid_state with why); a
  /// transact that gives up after its request went out leaves its reply
  /// owed (discarded when it comes).
  void transact(std::vector<std::byte> request, timeout t, detail::cancellation_slot slot,
                completion<std::vector<std::byte>> done);
  /// Complete once the peer has read everything sent before it (at `t`:
  /// timed_out); not_connected or broken_pipe when nothing can be sent.
  void flush(timeout t, detail::cancellation_slot slot, completion<> done);
  /// Complete every pending operation with operation_aborted, except a
  /// send being written, which finishes (a transact's reply is then owed).
  void cancel();
  /// Close; pending operations complete with `why` (and `detail`), a send
  /// being written once its write stops. The end stays closed.
  void close(std::error_code why = make_error_code(errc::operation_aborted), std::string detail = {});

protected:
  explicit async_pipe_base(const net::any_io_executor& ex) : async_pipe_common(ex) {}
  Derived& self() noexcept { return static_cast<Derived&>(*this); }
  /// A new operation with its id, its deadline `t` and `slot` hooked.
  std::unique_ptr<Op> make_op(timeout t, detail::cancellation_slot& slot);
  void arm(Op& o, timeout t, detail::cancellation_slot& slot);
  void finish(Op& o, std::error_code ec, const std::string& detail = {});
  /// A connect's operation; or null, when it has already completed `done`
  /// with why it cannot start (open or `connecting` already, closed, or
  /// options that check_client_options refuses).
  std::unique_ptr<Op> connect_op(const client_options& opts, bool connecting, completion<> done);
  /// Serve the receivers and read on if needed (kick_once), again while a
  /// completion that ran inline asked for it: never re-entered.
  void kick();
  /// If `id` is a waiting receiver, ends it with `why` and says true. A
  /// transact's receiver that gives up after its request went out leaves
  /// its reply owed (debt_): discarded when it arrives.
  bool end_reader(std::uint64_t id, errc why);
  /// Ends every waiting receiver with operation_aborted (as end_reader).
  void abort_readers();

  /// Takes the unstarted write at writes_[i] back out of the queue.
  std::unique_ptr<Op> withdraw_write(std::size_t i);
  /// Takes every queued write that `pick` chooses out of the queue, in
  /// order, in one pass: a byte pipe's send can be thousands of frames (as
  /// many as the peer's small limit makes), and taking them out one by one
  /// would cost their square. The caller completes them after.
  template <class Pick>
  std::vector<std::unique_ptr<Op>> withdraw_writes(Pick pick) {
    std::vector<std::unique_ptr<Op>> out;
    std::size_t keep = 0;
    for (auto& w : writes_) {
      if (pick(*w)) {
        tx_bytes_ -= Derived::queued_cost(*w);
        out.push_back(std::move(w));
      } else {
        if (&writes_[keep] != &w) writes_[keep] = std::move(w);
        ++keep;
      }
    }
    writes_.resize(keep);
    return out;
  }
  /// Ends every write not yet started with `why` (`detail`); the one being
  /// written ends when its write completes.
  void end_unstarted_writes(std::error_code why, const std::string& detail);
  /// A write the pipe took whole (out of writes_ already): a send
  /// completes; a transact's reply becomes a receiver, within what is left
  /// of its deadline (or, cancelled meanwhile, is owed). The caller kicks.
  void sent(Op& o);

  std::vector<std::unique_ptr<Op>> readers_; // waiting receivers, in order
  pipe_rules::reply_debt debt_;             // replies of transacts that gave up: discarded as they arrive
  bool in_kick_ = false, kick_again_ = false;
  std::vector<std::unique_ptr<Op>> writes_; // queued writes, in order; the head ones may be in progress (started)
  std::size_t tx_bytes_ = 0;                // their queued_cost
  bool tx_active_ = false;                  // a write is in progress
  bool tx_broken_ = false;                  // a write failed part-way: nothing more can be sent

private:
  /// Completes `o` and says true when nothing can be sent (not open, or torn).
  bool cannot_send(Op& o);
};

} // namespace npipe::detail
