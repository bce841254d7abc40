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

std::shared_ptr<async_pipe> async_pipe::create(const net::any_io_executor& ex) {
  auto p = std::make_shared<async_pipe>(ex);
  runtime_registry::enroll(ex, p);
  return p;
}

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
      auto taken = std::move(writes_[i]);
      writes_.erase(writes_.begin() + static_cast<std::ptrdiff_t>(i));
      tx_bytes_ -= taken->payload.size();
      finish(*taken, err(why));
    } else if (o.is_flush) {
      flusher_->stop(); // returns once the helper has given up (or finished just now)
      DWORD e = flusher_->error();
      ++flush_gen_; // its posted result, if any, is stale now
      flusher_.reset();
      auto taken = std::move(writes_.front());
      writes_.erase(writes_.begin());
      tx_active_ = false;
      if (e == 0) finish(*taken, {}); // it finished just in time
      else finish(*taken, err(why));
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

void async_pipe::cancel() {
  abort_readers();
  for (std::size_t i = 0; i < writes_.size();) {
    if (writes_[i]->started) {
      if (writes_[i]->is_flush) {
        end_op(writes_[i]->id, errc::operation_aborted);
        continue; // it left the queue
      }
      if (writes_[i]->then_receive) writes_[i]->cancelled = true; // ends once its request is out
      ++i;
      continue;
    }
    auto taken = std::move(writes_[i]);
    writes_.erase(writes_.begin() + static_cast<std::ptrdiff_t>(i));
    tx_bytes_ -= taken->payload.size();
    finish(*taken, err(errc::operation_aborted));
  }
  if (conn_) fail_connect(err(errc::operation_aborted), "the connect was cancelled");
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

void async_pipe::queue_write(std::unique_ptr<op> o) {
  tx_bytes_ += o->payload.size();
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
      auto taken = std::move(writes_.front());
      writes_.erase(writes_.begin());
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
  auto taken = std::move(writes_.front());
  writes_.erase(writes_.begin());
  tx_bytes_ -= taken->payload.size();
  if (e == 0) {
    touch();
    if (taken->timer) taken->timer->cancel();
    if (taken->then_receive && taken->cancelled) { // cancelled while its request went out: the reply is owed
      debt_.gave_up(false);
      finish(*taken, err(errc::operation_aborted));
    } else if (taken->then_receive) { // transact: the request is out; now its reply, within what is left of the deadline
      auto r = std::make_unique<op>();
      r->id = taken->id;
      r->on_msg = std::move(taken->then_receive);
      r->transact_reply = true;
      if (taken->timer) start_deadline(*this, *r, taken->timer->expiry());
      readers_.push_back(std::move(r));
      kick();
    } else if (taken->on_sent) {
      std::exchange(taken->on_sent, nullptr)({}, taken->payload.size());
    }
    start_tx();
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
  auto taken = std::move(writes_.front());
  writes_.erase(writes_.begin());
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

void async_pipe::send(net::const_buffer msg, std::vector<std::byte> owned, timeout t, detail::cancellation_slot slot,
                      completion<std::size_t> done) {
  auto o = make_op(t, slot);
  o->on_sent = std::move(done);
  std::size_t size = owned.empty() ? msg.size() : owned.size();
  if (!is_open() || tx_broken_) {
    finish(*o, err(is_open() ? errc::broken_pipe : errc::not_connected),
           is_open() ? "an earlier send failed part-way; this connection cannot send any more" : "the pipe is not open");
    return;
  }
  if (p_.type == pipe_type::message && size > max_write) {
    finish(*o, err(errc::message_too_large),
           "a message larger than 4 GiB cannot be written to a Win32 pipe; nothing was sent");
    return;
  }
  o->owned = std::move(owned);
  o->payload = o->owned.empty() ? msg : net::buffer(o->owned);
  queue_write(std::move(o));
}

void async_pipe::transact(std::vector<std::byte> request, timeout t, detail::cancellation_slot slot,
                          completion<std::vector<std::byte>> done) {
  auto o = make_op(t, slot);
  o->on_msg = std::move(done);
  if (!is_open()) {
    finish(*o, err(errc::not_connected), "the pipe is not open");
    return;
  }
  // TransactNamedPipe's rules: a message pipe in message read mode, and no
  // unread message (ERROR_PIPE_BUSY there).
  DWORD total = 0;
  // Replies owed to transacts that gave up do not count as unread: they are
  // discarded as they come, ahead of this one's.
  bool unread = !readers_.empty() ||
                (debt_.owed == 0 && ((held_ && !rx_active_) || (!rx_active_ && ::PeekNamedPipe(native(), nullptr, 0, nullptr, &total, nullptr) && total > 0)));
  if (auto why = pipe_rules::transact_refusal(p_.type, mode(), unread)) {
    finish(*o, err(errc::invalid_state), why);
    return;
  }
  if (tx_broken_ || request.size() > max_write) {
    finish(*o, err(tx_broken_ ? errc::broken_pipe : errc::message_too_large),
           tx_broken_ ? "an earlier send failed part-way; this connection cannot send any more"
                      : "a request larger than 4 GiB cannot be written to a Win32 pipe; nothing was sent");
    return;
  }
  o->then_receive = std::move(o->on_msg);
  o->owned = std::move(request);
  o->payload = net::buffer(o->owned);
  queue_write(std::move(o));
}

void async_pipe::flush(timeout t, detail::cancellation_slot slot, completion<> done) {
  auto o = make_op(t, slot);
  o->on_done = std::move(done);
  if (!is_open() || tx_broken_) {
    finish(*o, err(is_open() ? errc::broken_pipe : errc::not_connected), "the pipe cannot send");
    return;
  }
  o->is_flush = true; // after the sends before it: FlushFileBuffers then waits for the peer to read them
  queue_write(std::move(o));
}

// ------------------------------------------------------------------- closing

void async_pipe::close(std::error_code why, std::string detail) {
  if (closed_) return;
  if (conn_) fail_connect(why, detail.empty() ? "the connection was closed" : detail);
  closed_ = true;
  open_.store(false, std::memory_order_release);
  if (detail.empty()) detail = "the pipe was closed";
  auto rs = std::move(readers_);
  readers_.clear();
  for (auto& o : rs) finish(*o, why, detail);
  if (flusher_) { // a flush in progress: stop it and end it now
    flusher_->stop();
    ++flush_gen_;
    flusher_.reset();
    tx_active_ = false;
    auto taken = std::move(writes_.front());
    writes_.erase(writes_.begin());
    finish(*taken, why, detail);
  }
  // Sends not yet started end now; the one being written ends in on_written
  // (closing the handle aborts it).
  for (std::size_t i = 0; i < writes_.size();) {
    if (writes_[i]->started) {
      ++i;
      continue;
    }
    auto o = std::move(writes_[i]);
    writes_.erase(writes_.begin() + static_cast<std::ptrdiff_t>(i));
    tx_bytes_ -= o->payload.size();
    finish(*o, why, detail);
  }
  // CloseHandle, not DisconnectNamedPipe: the peer still reads what was
  // written (a reply sent just before a graceful stop), then sees the end.
  std::error_code ignore;
  handle_.close(ignore);
  if (!rx_active_) held_.reset(); // otherwise the aborted read still writes into it; on_read drops it
  if (p_.on_close) std::exchange(p_.on_close, nullptr)();
  if (on_closed) std::exchange(on_closed, nullptr)();
}

} // namespace npipe::detail
