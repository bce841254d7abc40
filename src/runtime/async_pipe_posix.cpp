// SPDX-License-Identifier: MIT
// Linux async pipe: the end's life (creating, adopting a server's socket,
// operations, their deadlines and cancellation), sending and flushing, and
// closing. Connecting is in async_connect_posix.cpp, receiving in
// async_receive_posix.cpp; what they share is in async_pipe_posix_parts.hpp.
#include "runtime/async_pipe_posix_parts.hpp"

#include "core/framing.hpp"
#include "core/pipe_rules.hpp"

#include <cstring>
#include <limits>

#include <sys/socket.h>

namespace npipe::detail {
using namespace async_posix;

// What a queued send costs in memory: the operation and the payload it
// holds or points into (counted against the peer's queued-bytes cap).
std::size_t async_pipe::queued_cost(const op& o) noexcept { return sizeof(op) + o.payload.size(); }

async_pipe::async_pipe(const net::any_io_executor& ex)
    : async_pipe_base(ex), stream_(strand_), socket_(stream_.socket()) {}

async_pipe::~async_pipe() = default;

void async_pipe::abandon() noexcept {
  // The context is shutting down: no thread runs the strand now.
  readers_.clear();
  flushers_.clear();
  writes_.clear();
  conn_.reset();
  receipt_timer_.reset();
}

// ---------------------------------------------------------------- operations

// A byte pipe's send goes out as several frames that share its id, the last
// one carrying its completion: the id of one whose first frames are out (or
// being written) and whose last is not, if any (writes go in order: at most
// one send is part-way).
std::uint64_t async_pipe::unfinished_send() const noexcept {
  if (tx_active_ && tx_batch_ > 0) return writes_[tx_batch_ - 1]->is_piece() ? writes_[tx_batch_ - 1]->id : 0;
  return tx_partial_;
}

bool async_pipe::begun(const op& o) const noexcept { return o.started || (o.id != 0 && o.id == unfinished_send()); }

// Ends operation `id` with `why`: a deadline (timed_out) or a cancellation
// (operation_aborted). A send that has begun going out (or the first frames
// of a byte pipe's) cannot be withdrawn without tearing the stream: a
// deadline stops the write (on_tx completes it and breaks the connection);
// a cancellation lets it finish (a transact then ends as its request goes
// out, its reply owed). One that has not begun leaves the queue whole.
void async_pipe::end_op(std::uint64_t id, errc why) {
  if (end_reader(id, why)) return;
  for (auto it = flushers_.begin(); it != flushers_.end(); ++it) {
    if ((*it)->id != id) continue;
    auto o = std::move(*it);
    flushers_.erase(it);
    finish(*o, err(why));
    return;
  }
  if (conn_ && conn_->o && conn_->o->id == id) {
    // The connect has its own timer; a cancellation ends it now.
    if (why == errc::operation_aborted) fail_connect(err(why), "the connect was cancelled");
    return;
  }
  for (std::size_t i = 0; i < writes_.size(); ++i) {
    auto& o = *writes_[i];
    if (o.id != id) continue;
    if (!begun(o)) {
      for (auto& taken : withdraw_writes([id](const op& w) { return w.id == id; })) finish(*taken, err(why));
    } else if (why == errc::timed_out) {
      for (auto& w : writes_)
        if (w->id == id) w->timed_out = true;
      if (tx_active_) socket_.cancel(); // on_tx ends it
      else tear({}, net_error(net::error::operation_aborted));
    } else if (o.then_receive) {
      // A transact whose request is on its way: it ends once the request
      // is out (on_tx), and its reply is owed.
      o.cancelled = true;
    }
    return;
  }
}

// Flushes waiting for their acknowledgement (their frames may be out).
void async_pipe::abort_io(std::error_code why, const std::string& detail) {
  auto fs = std::move(flushers_);
  flushers_.clear();
  for (auto& o : fs) finish(*o, why, detail);
}

bool async_pipe::quiet() const noexcept {
  return writes_.empty() && inbox_head_ == inbox_.size() && !rd_.mid_frame();
}

// ------------------------------------------------------------------- opening

void async_pipe::init_open(connection_params p) {
  p_ = std::move(p);
  mode_.store(p_.mode, std::memory_order_relaxed);
  std::error_code ignore;
  socket_.non_blocking(true, into(ignore));
  open_.store(true, std::memory_order_release);
  touch();
  tx_offset_ = p_.sent_before;
  rd_ = framing::reader(p_.max_message);
  if (!p_.initial.empty()) {
    auto initial = std::move(p_.initial);
    p_.initial = {};
    parse(initial.data(), initial.size());
  }
  kick();
}

bool async_pipe::adopt(std::intptr_t fd, connection_params p, std::error_code& ec) {
  int family = AF_UNIX;
  socket_.assign(net::generic::stream_protocol(family, 0), static_cast<int>(fd), into(ec));
  if (ec) {
    ::close(static_cast<int>(fd));
    ec = io_error(ec);
    if (p.on_close) p.on_close();
    return false;
  }
  init_open(std::move(p));
  return true;
}

// ------------------------------------------------------------------- sending

void async_pipe::queue_frame(protocol::frame_type t, std::unique_ptr<op> o) {
  if (!o) {
    o = std::make_unique<op>();
    o->id = next_id_++;
  }
  std::size_t len = o->payload.size(); // `owned`, if used, is what payload points into
  o->hdr = protocol::encode_frame_header(t, static_cast<std::uint32_t>(len));
  tx_bytes_ += queued_cost(*o);
  writes_.push_back(std::move(o));
  start_tx();
}

void async_pipe::start_tx() {
  // A deferred receipt alone waits for its turn (defer_receipt); with anything else it goes now.
  if (tx_active_ || (writes_.empty() && acks_owed_ == 0 && (receipt_due_ == 0 || receipt_deferred_)) || closed_ ||
      tx_broken_)
    return;
  txbufs_.clear();
  // Acknowledgements first: they are whole frames, and the peer counts them
  // wherever they fall between our frames.
  tx_acks_ = std::min(acks_owed_, acks_per_write);
  if (tx_acks_) txbufs_.push_back(net::buffer(ack_run().data(), tx_acks_ * protocol::frame_header_size));
  tx_receipt_ = std::exchange(receipt_due_, 0);
  if (tx_receipt_) {
    receipt_frame_ = protocol::encode_consumed(tx_receipt_);
    txbufs_.push_back(net::buffer(receipt_frame_));
  }
  tx_batch_ = std::min(writes_.size(), max_batch);
  for (std::size_t i = 0; i < tx_batch_; ++i) {
    auto& o = *writes_[i];
    o.started = true;
    txbufs_.push_back(net::buffer(o.hdr));
    if (o.payload.size()) txbufs_.push_back(o.payload);
  }
  tx_active_ = true;
  stream_.async_write(txbufs_, [self = shared_from_this()](const std::error_code& ec, std::size_t n) {
    self->on_tx(ec, n);
  });
}

void async_pipe::on_tx(const std::error_code& ec, std::size_t n) {
  tx_active_ = false;
  std::vector<std::unique_ptr<op>> batch(std::make_move_iterator(writes_.begin()),
                                         std::make_move_iterator(writes_.begin() + static_cast<std::ptrdiff_t>(tx_batch_)));
  writes_.erase(writes_.begin(), writes_.begin() + static_cast<std::ptrdiff_t>(tx_batch_));
  for (auto& o : batch) tx_bytes_ -= queued_cost(*o);
  const bool earlier_out = std::any_of(batch.begin(), batch.end(), [&](const auto& o) {
    return o->timed_out && o->id == tx_partial_; // its first frames went in an earlier write
  });
  if (ec && !stream_.began(n) && !closed_ && ec == net_error(net::error::operation_aborted) && !earlier_out) {
    // A timed-out send stopped the write before any byte of it went:
    // nothing is torn. Complete the timed-out ones (with a byte pipe's
    // frames still queued); put the rest (and a receipt) back.
    receipt_due_ = std::max(receipt_due_, tx_receipt_);
    std::vector<std::unique_ptr<op>> back;
    for (auto& o : batch) {
      if (o->timed_out) finish(*o, err(errc::timed_out));
      else {
        o->started = false;
        tx_bytes_ += queued_cost(*o);
        back.push_back(std::move(o));
      }
    }
    writes_.insert(writes_.begin(), std::make_move_iterator(back.begin()), std::make_move_iterator(back.end()));
    for (auto& taken : withdraw_writes([](const op& w) { return w.timed_out; })) finish(*taken, err(errc::timed_out));
    start_tx();
    return;
  }
  if (ec) {
    tear(std::move(batch), ec, n);
    return;
  }
  touch();
  acks_owed_ -= tx_acks_;
  // Where each frame went in our stream: flushers learn where theirs was.
  std::uint64_t at = tx_offset_ + tx_acks_ * protocol::frame_header_size;
  if (tx_receipt_) at += receipt_frame_.size();
  for (auto& o : batch) {
    if (!o->is_data())
      for (auto& f : flushers_)
        if (f->target == o->target) {
          f->pos = at;
          f->pos_known = true;
        }
    at += o->hdr.size() + o->payload.size();
  }
  tx_offset_ = at;
  for (auto& o : batch)
    if (o->is_data()) tx_partial_ = o->is_piece() ? o->id : 0;
  for (auto& o : batch) sent(*o);
  if (!writes_.empty() && writes_.front()->timed_out && !closed_) {
    // A deadline that came as this write finished (its cancel found nothing
    // to stop) for a send whose first frames were in it: the rest cannot go.
    tear({}, net_error(net::error::operation_aborted));
    return;
  }
  start_tx();
  kick();
}

// A write failed, or was stopped after part of what it carried went: the
// stream is torn, this end is done sending. `batch` is what that write
// carried, of which the socket took `n` bytes: over a plain socket those
// are the kernel's and reach the peer, so the sends they hold whole went
// and complete as sent (over TLS a record may be cut: none is claimed).
// A send whose deadline stopped it ends with timed_out (all of it: a byte
// pipe's frames still queued too), everything else with broken_pipe then,
// or with the write's error.
void async_pipe::tear(std::vector<std::unique_ptr<op>> batch, const std::error_code& ec, std::size_t n) {
  std::size_t whole = 0;
  if (n > 0 && !stream_.session()) {
    std::size_t at = tx_acks_ * protocol::frame_header_size + (tx_receipt_ ? receipt_frame_.size() : 0);
    for (; whole < batch.size(); ++whole) {
      at += batch[whole]->hdr.size() + batch[whole]->payload.size();
      if (at > n) break;
    }
  }
  auto timed = [](const auto& o) { return o->timed_out; };
  const bool timed_out = std::any_of(batch.begin(), batch.end(), timed) || std::any_of(writes_.begin(), writes_.end(), timed);
  std::error_code e;
  std::string detail;
  if (closed_) {
    e = err(errc::operation_aborted);
    detail = "the pipe was closed";
  } else if (timed_out && ec == net_error(net::error::operation_aborted)) {
    e = err(errc::broken_pipe);
    detail = "a send timed out part-way; this connection cannot send any more";
  } else {
    e = io_error(ec);
    detail = stream_.error_detail(ec, "writing to the pipe failed: ");
  }
  tx_broken_ = true;
  broken_.store(true, std::memory_order_release);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto& o = *batch[i];
    if (i < whole && o.is_data()) sent(o);
    else finish(o, o.timed_out ? err(errc::timed_out) : e, detail);
  }
  for (auto& taken : withdraw_writes([](const op& w) { return w.timed_out; }))
    finish(*taken, err(errc::timed_out), detail);
  fail_writes(e, detail);
  if (!closed_) {
    std::error_code ignore;
    socket_.shutdown(net::socket_base::shutdown_send, into(ignore));
  }
  kick();
}

void async_pipe::fail_writes(std::error_code ec, const std::string& detail) {
  auto rest = std::move(writes_);
  writes_.clear();
  tx_bytes_ = 0;
  acks_owed_ = 0;
  for (auto& o : rest) finish(*o, ec, detail);
  auto fs = std::move(flushers_);
  flushers_.clear();
  for (auto& o : fs) finish(*o, ec, detail);
}

std::error_code async_pipe::size_refusal(std::size_t size, std::string& detail) const {
  return framing::check_send(p_.type, size, p_.peer_max_message, detail);
}

void async_pipe::queue_message(std::unique_ptr<op> o, std::span<const std::byte> data, std::vector<std::byte> owned) {
  // Message pipes: one frame. Byte pipes: frames of at most byte_chunk (and
  // the peer's limit), the last one carrying the completion; no bytes, no frame.
  framing::frame_cuts cuts(p_.type, data, p_.peer_max_message);
  std::span<const std::byte> part;
  if (!cuts.next(part)) {
    finish(*o, {});
    return;
  }
  for (bool more = true; more;) {
    std::span<const std::byte> next;
    more = cuts.next(next);
    std::unique_ptr<op> frame;
    if (!more) {
      frame = std::move(o);
      // The last frame keeps `owned` alive; moving a vector keeps its
      // storage, so the earlier frames (written first) still point into it.
      frame->owned = std::move(owned);
    } else {
      frame = std::make_unique<op>();
      frame->id = o->id; // one send: a deadline or a cancellation finds all of it
    }
    frame->payload = net::buffer(part.data(), part.size());
    queue_frame(protocol::frame_type::data, std::move(frame));
    part = next;
  }
}

void async_pipe::queue_request(std::unique_ptr<op> o) { queue_frame(protocol::frame_type::data, std::move(o)); }

bool async_pipe::unread() {
  // Replies owed to transacts that gave up do not count as unread: they
  // are discarded as they come, ahead of this one's.
  settle_debt();
  // A message begun on the wire (a data header, whole or in part) is unread too.
  std::size_t waiting = inbox_messages_ + (rd_.in_data() || rd_.holds_data_start() ? 1 : 0);
  return waiting > debt_.owed || !readers_.empty();
}

void async_pipe::queue_flush(std::unique_ptr<op> o) {
  if (writes_.empty() && !p_.peer.is_remote() && peer_took_everything(socket_.native_handle())) {
    finish(*o, {});
    return;
  }
  o->target = flushes_.issue();
  auto marker = std::make_unique<op>();
  marker->id = next_id_++;
  marker->target = o->target; // on_tx tells the flusher where in our stream its frame went
  flushers_.push_back(std::move(o));
  queue_frame(protocol::frame_type::flush, std::move(marker));
  kick();
}

// ------------------------------------------------------------------- closing

// Acknowledge flushes the application has satisfied, so the peer's flush()
// succeeds instead of breaking (as the blocking end does).
void async_pipe::before_close() {
  if (!is_open() || !writes_.empty() || tx_active_ || rd_.in_data() || tx_broken_) return;
  if (!rx_active_ && !eof_ && !rx_err_ && !inbox_has_data()) {
    std::error_code rec;
    std::size_t n = stream_.read_some(scratch(), scratch_size, rec);
    try {
      if (!rec) parse(scratch(), n);
    } catch (const std::bad_alloc&) {
    }
  }
  std::size_t acks = acks_owed_;
  for (std::size_t i = inbox_head_; i < inbox_.size() && inbox_[i].flushes; ++i) acks += inbox_[i].flushes;
  // A best effort that never blocks, with a receipt still waiting for its
  // turn (the peer's flush may wait on it). An empty send says nothing
  // (and fails once the peer has gone).
  std::array<std::byte, (acks_per_write + 1) * protocol::frame_header_size + protocol::consumed_payload> out;
  std::size_t len = std::min(acks, acks_per_write) * protocol::frame_header_size;
  std::memcpy(out.data(), ack_run().data(), len);
  auto receipt = protocol::encode_consumed(receipt_due_);
  if (receipt_due_) std::memcpy(out.data() + len, receipt.data(), receipt.size());
  len += receipt_due_ ? receipt.size() : 0;
  if (len > 0) stream_.try_write(out.data(), len);
}

void async_pipe::release_io() {
  if (receipt_timer_) receipt_timer_->cancel();
  stream_.close();
  inbox_.clear();
  inbox_.shrink_to_fit();
  inbox_head_ = 0;
  inbox_messages_ = 0;
  msg_ = {};
}

} // namespace npipe::detail
