// SPDX-License-Identifier: MIT
// Windows async pipe (see async_pipe_win32.hpp): the end's life
// (operations, their deadlines and cancellation), sending and flushing, and
// closing. Opening is in async_connect_win32.cpp, receiving in
// async_receive_win32.cpp; what they share is in async_pipe_win32_parts.hpp.
#include "runtime/async_pipe_win32_parts.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(bind_executor.hpp)
#include NPIPE_NET_HEADER(dispatch.hpp)
#include NPIPE_NET_HEADER(post.hpp)
#include NPIPE_NET_HEADER(windows/overlapped_ptr.hpp)

#include "core/pipe_rules.hpp"
#include "remote/remote.hpp"
#include "transport/win32_util.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace npipe::detail {
using namespace async_win32;

async_pipe::async_pipe(const net::any_io_executor& ex) : async_pipe_base(ex), handle_(strand_) {}

async_pipe::~async_pipe() {
  if (flusher_) flusher_->stop();
}

void async_pipe::abandon() noexcept {
  // The context is shutting down: no thread runs the strand now. A write in
  // progress keeps its buffer until the kernel lets go of it (Asio closes
  // the handle and drains the port); only the handlers go.
  readers_.clear();
  std::unique_ptr<op> in_progress;
  if (tx_active_ && !writes_.empty()) {
    in_progress = std::move(writes_.front());
    in_progress->on_sent = nullptr;
    in_progress->then_receive = nullptr;
    in_progress->on_done = nullptr;
    in_progress->timer.reset();
  }
  writes_.clear();
  if (in_progress) writes_.push_back(std::move(in_progress));
  if (flusher_) flusher_->stop();
  conn_.reset();
}

// ---------------------------------------------------------------- operations

// Ends operation `id` with `why`: a deadline (timed_out) or a cancellation
// (operation_aborted). A receiver just leaves the queue: a read in progress
// goes on into held_, so nothing it brings is lost. A send already being
// written cannot be withdrawn without tearing its message: a deadline
// cancels the WriteFile (on_written completes it and breaks the connection
// if part went out); a cancellation lets it finish. A flush in progress is
// cancelled either way.
void async_pipe::end_op(std::uint64_t id, errc why) {
  if (end_reader(id, why)) return;
  if (conn_ && conn_->o && conn_->o->id == id) {
    // The connect has its own deadline; a cancellation ends it now.
    if (why == errc::operation_aborted) fail_connect(err(why), "the connect was cancelled");
    return;
  }
  for (std::size_t i = 0; i < writes_.size(); ++i) {
    auto& o = *writes_[i];
    if (o.id != id) continue;
    if (!o.started) {
      auto taken = withdraw_write(i);
      finish(*taken, err(why));
    } else if (o.is_flush) {
      stop_flush(err(why), {});
      start_tx();
    } else if (why == errc::timed_out) {
      o.timed_out = true;
      if (tx_ov_) ::CancelIoEx(native(), tx_ov_);
    } else if (o.then_receive) {
      // A transact whose request is on its way: it ends once the request
      // is out (on_written), and its reply is owed.
      o.cancelled = true;
    }
    return;
  }
}

// Ends the flush in progress (the head of writes_): successfully if its
// helper finished just now (unless closing), else with `why`.
void async_pipe::stop_flush(std::error_code why, const std::string& detail) {
  flusher_->stop(); // returns once the helper has given up (or finished just now)
  DWORD e = flusher_->error();
  ++flush_gen_; // its posted result, if any, is stale now
  flusher_.reset();
  tx_active_ = false;
  auto taken = withdraw_write(0);
  if (e == 0 && !closed_) finish(*taken, {}); // it finished just in time
  else finish(*taken, why, detail);
}

// A flush in progress (FlushFileBuffers on its helper thread). Nothing is
// started after it: a cancel or a close then ends every write not begun.
void async_pipe::abort_io(std::error_code why, const std::string& detail) {
  if (flusher_) stop_flush(why, detail);
}

bool async_pipe::begun(const op& o) const noexcept { return o.started; } // one WriteFile per send

void async_pipe::before_close() {}

void async_pipe::release_io() {
  // CloseHandle, not DisconnectNamedPipe: the peer still reads what was
  // written (a reply sent just before a graceful stop), then sees the end.
  std::error_code ignore;
  handle_.close(ignore);
  if (!rx_active_) held_.reset(); // otherwise the aborted read still writes into it; on_read drops it
}

bool async_pipe::quiet() const noexcept {
  if (!writes_.empty()) return false;
  if (!held_) return true;
  std::size_t end = rx_active_ ? rx_base_ : held_->data.size();
  return end == held_->off && !held_->more;
}

std::error_code async_pipe::pipe_error(DWORD e, std::string& detail) const {
  if (closed_) {
    detail = "the pipe was closed";
    return err(errc::operation_aborted);
  }
  auto ec = win32_error(e);
  if (peer_gone(e)) detail = "the peer closed the pipe";
  else detail = "the pipe failed: " + std::system_category().message(static_cast<int>(e));
  return ec;
}

// ------------------------------------------------------------------- sending

std::size_t async_pipe::queued_cost(const op& o) noexcept { return o.payload.size(); }

void async_pipe::queue_write(std::unique_ptr<op> o) {
  tx_bytes_ += queued_cost(*o);
  writes_.push_back(std::move(o));
  start_tx();
}

void async_pipe::start_tx() {
  if (tx_active_ || writes_.empty() || closed_) return;
  auto& o = *writes_.front();
  o.started = true;
  tx_active_ = true;
  HANDLE hd = native();
  if (o.is_flush) {
    try {
      flusher_ = std::make_unique<background_flush>();
      flusher_->start(hd, [w = weak_from_this(), s = strand_, gen = ++flush_gen_](DWORD e) {
        // Only post from the helper: the pipe is locked (and possibly
        // destroyed) on the strand, never on this thread.
        net::post(s, [w, e, gen] {
          if (auto self = w.lock(); self && self->flush_gen_ == gen) self->on_flushed(e);
        });
      });
    } catch (const std::exception& ex) {
      flusher_.reset();
      tx_active_ = false;
      auto taken = withdraw_write(0);
      finish(*taken, err(errc::system_error), std::string("cannot start the flush: ") + ex.what());
      start_tx();
    }
    return;
  }
  const std::byte* data = static_cast<const std::byte*>(o.payload.data()) + o.written;
  std::size_t len = o.payload.size() - o.written;
  if (p_.type == pipe_type::byte) len = std::min(len, byte_chunk);
  tx_ov_ = start_overlapped(
      strand_,
      [&](OVERLAPPED* ov) { return ::WriteFile(hd, data, static_cast<DWORD>(len), nullptr, ov); },
      [self = shared_from_this()](const std::error_code& ec, std::size_t n) { self->on_written(ec, n); });
}

void async_pipe::on_written(const std::error_code& ec, std::size_t n) {
  tx_active_ = false;
  tx_ov_ = nullptr;
  if (writes_.empty()) return; // abandoned
  auto& o = *writes_.front();
  o.written += n;
  DWORD e = win32_code(ec);
  if (e == 0 && o.written < o.payload.size()) { // a byte pipe took part: write the rest
    if (!closed_) {
      touch();
      start_tx();
      return;
    }
    e = ERROR_OPERATION_ABORTED;
  }
  auto taken = withdraw_write(0);
  if (e == 0) {
    touch();
    sent(*taken);
    start_tx();
    kick();
    return;
  }
  if (e == ERROR_OPERATION_ABORTED && taken->timed_out && taken->written == 0 && !closed_) {
    // The deadline stopped the write before any byte went: nothing is torn.
    finish(*taken, err(errc::timed_out));
    start_tx();
    return;
  }
  // Part of a message may have gone: the stream is torn, this end is done sending.
  std::string detail;
  auto fe = pipe_error(e, detail);
  if (taken->timed_out && !closed_) {
    fe = err(errc::timed_out);
    detail = "the send timed out part-way; this connection cannot send any more";
  } else if (!closed_) {
    detail = "writing to the pipe failed: " + detail;
  }
  tx_broken_ = true;
  broken_.store(true, std::memory_order_release);
  finish(*taken, fe, detail);
  fail_writes(fe == errc::timed_out ? err(errc::broken_pipe) : fe, detail);
  kick();
}

void async_pipe::on_flushed(DWORD e) {
  if (!flusher_ || writes_.empty() || !writes_.front()->is_flush) return; // ended by end_op or close
  flusher_->join();
  flusher_.reset();
  tx_active_ = false;
  auto taken = withdraw_write(0);
  if (e == 0) {
    finish(*taken, {});
  } else {
    std::string detail;
    auto fe = pipe_error(e, detail);
    finish(*taken, fe, "the flush failed: " + detail);
  }
  start_tx();
}

void async_pipe::fail_writes(std::error_code ec, const std::string& detail) {
  auto rest = std::move(writes_);
  writes_.clear();
  tx_bytes_ = 0;
  for (auto& o : rest) finish(*o, ec, detail);
}

std::error_code async_pipe::size_refusal(std::size_t size, std::string& detail) const {
  if (p_.type == pipe_type::byte || size <= max_write) return {};
  detail = "a message larger than 4 GiB cannot be written to a Win32 pipe; nothing was sent";
  return err(errc::message_too_large);
}

void async_pipe::queue_message(std::unique_ptr<op> o, std::span<const std::byte> data, std::vector<std::byte> owned) {
  o->owned = std::move(owned); // moving a vector keeps its storage: `data` still points into it
  o->payload = net::buffer(data.data(), data.size());
  queue_write(std::move(o));
}

void async_pipe::queue_request(std::unique_ptr<op> o) { queue_write(std::move(o)); }

bool async_pipe::unread() {
  // TransactNamedPipe's ERROR_PIPE_BUSY: a message waits. Replies owed to
  // transacts that gave up do not count: they are discarded as they come,
  // ahead of this one's.
  DWORD total = 0;
  return !readers_.empty() ||
         (debt_.owed == 0 && ((held_ && !rx_active_) || (!rx_active_ && ::PeekNamedPipe(native(), nullptr, 0, nullptr,
                                                                                        &total, nullptr) &&
                                                          total > 0)));
}

void async_pipe::queue_flush(std::unique_ptr<op> o) {
  o->is_flush = true; // after the sends before it: FlushFileBuffers then waits for the peer to read them
  queue_write(std::move(o));
}

} // namespace npipe::detail
