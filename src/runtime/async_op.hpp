// SPDX-License-Identifier: MIT
#pragma once
// What a pending operation of an async pipe is, on every system: its
// completion, its deadline and its hook into the caller's cancellation
// slot. async_pipe_posix and async_pipe_win32 derive their own op from it.

#include "transport/transport.hpp"

#include <npipe/async.hpp>

#include <asio/dispatch.hpp>
#include <asio/steady_timer.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace npipe::detail {

struct async_op {
  std::uint64_t id = 0;
  std::unique_ptr<asio::steady_timer> timer;
  // receivers
  completion<std::vector<std::byte>> on_msg;
  completion<read_result> on_some;
  asio::mutable_buffer buf;
  // senders
  completion<std::size_t> on_sent;
  asio::const_buffer payload;
  std::vector<std::byte> owned;
  bool started = false;
  bool timed_out = false;                          // its deadline passed while it was being written
  completion<std::vector<std::byte>> then_receive; // transact: the reply's receiver, queued once sent
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
  o.timer = std::make_unique<asio::steady_timer>(pipe.strand(), at);
  o.timer->async_wait([w = pipe.weak_from_this(), id = o.id](const std::error_code& ec) {
    if (ec) return;
    if (auto self = w.lock()) self->end_op(id, errc::timed_out);
  });
}

/// Arms `o`'s timeout `t` (none if negative) and hooks the caller's
/// cancellation slot: a cancellation ends it with operation_aborted.
template <class Pipe>
void arm_op(Pipe& pipe, async_op& o, timeout t, asio::cancellation_slot& slot) {
  if (t >= timeout::zero()) start_deadline(pipe, o, clock::now() + t);
  if (slot.is_connected()) {
    slot.assign([w = pipe.weak_from_this(), id = o.id](asio::cancellation_type) {
      if (auto self = w.lock())
        asio::dispatch(self->strand(), [self, id] { self->end_op(id, errc::operation_aborted); });
    });
  }
}

} // namespace npipe::detail
