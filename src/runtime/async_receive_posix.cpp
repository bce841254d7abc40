// SPDX-License-Identifier: MIT
// Linux async pipe, receiving: reading the socket only while someone will
// take what it brings, the frame engine's events into the inbox, and the
// inbox to receivers, byte and message mode alike.
#include "runtime/async_pipe_posix_parts.hpp"
#include "runtime/async_pipe_base_impl.hpp"

#include "core/framing.hpp"
#include "core/pipe_rules.hpp"

#include <cstring>

namespace npipe::detail {
using namespace async_posix;

// ----------------------------------------------------------------- receiving

bool async_pipe::inbox_has_data() const noexcept { return inbox_messages_ > 0; }

void async_pipe::pop_front_msg() {
  inbox_bytes_ -= inbox_[inbox_head_].data.size();
  if (!inbox_[inbox_head_].flushes) --inbox_messages_;
  inbox_[inbox_head_] = {};
  if (++inbox_head_ == inbox_.size()) {
    inbox_head_ = 0;
    inbox_.clear();
    if (inbox_.capacity() > 64) inbox_.shrink_to_fit();
  }
}

void async_pipe::ack_leading_flushes() {
  while (inbox_head_ < inbox_.size() && inbox_[inbox_head_].flushes) {
    std::size_t n = inbox_[inbox_head_].flushes;
    pop_front_msg();
    if (!tx_broken_ && !closed_) {
      acks_owed_ += n; // a count, not queued operations: a peer that floods flushes costs no memory
      start_tx();
    }
  }
}

std::vector<std::byte> async_pipe::take_message() {
  auto& m = inbox_[inbox_head_];
  std::vector<std::byte> out = std::move(m.data);
  if (m.off) out.erase(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(m.off));
  inbox_bytes_ -= m.off; // pop_front_msg subtracts the (now moved-out) size
  inbox_bytes_ -= out.size();
  m.data = {};
  pop_front_msg();
  return out;
}

std::size_t async_pipe::take_bytes(std::byte* out, std::size_t n, bool one_message, bool& more) {
  std::size_t got = 0;
  more = false;
  while (inbox_head_ < inbox_.size()) {
    auto& m = inbox_[inbox_head_];
    if (m.flushes) {
      if (one_message && got > 0) break;
      ack_leading_flushes();
      continue;
    }
    std::size_t c = std::min(n - got, m.data.size() - m.off);
    if (c) std::memcpy(out + got, m.data.data() + m.off, c);
    got += c;
    m.off += c;
    if (m.off < m.data.size()) {
      more = one_message;
      break;
    }
    pop_front_msg();
    if (one_message || got == n) break;
  }
  return got;
}

std::error_code async_pipe::rx_state_error(std::string& detail) const {
  if (rx_err_) {
    detail = rx_detail_;
    return rx_err_;
  }
  if (eof_) {
    if (!peer_name_.empty())
      detail = peer_name_ + (rd_.mid_frame() ? " closed the connection in the middle of a message"
                                             : " closed the connection");
    else
      detail = rd_.mid_frame() ? "the peer closed the pipe in the middle of a message" : "the peer closed the pipe";
    return err(errc::broken_pipe);
  }
  if (!is_open()) {
    detail = "the pipe is closed";
    return err(errc::not_connected);
  }
  return {};
}

// Discards the replies owed to transacts that gave up, as far as they have
// arrived (whole messages: they are read ahead like any other).
void async_pipe::settle_debt() {
  while (debt_.owed > 0) {
    ack_leading_flushes();
    if (!inbox_has_data()) return;
    take_message();
    --debt_.owed;
  }
  ack_leading_flushes();
}

// Satisfies the reader if it can; true when it completed (and was removed).
bool async_pipe::serve_reader(op& o) {
  settle_debt();
  const bool msg_mode = mode() == npipe::read_mode::message;
  if (!inbox_has_data()) {
    std::string detail;
    if (auto ec = rx_state_error(detail)) {
      finish(o, ec, detail);
      return true;
    }
    return false;
  }
  if (!msg_mode) top_up(o.on_msg ? byte_receive : o.buf.size());
  touch();
  receipts_.data_taken();
  if (o.on_msg) {
    std::vector<std::byte> out;
    if (msg_mode) {
      out = take_message();
    } else {
      out.resize(byte_receive);
      bool more = false;
      out.resize(take_bytes(out.data(), out.size(), false, more));
    }
    ack_leading_flushes();
    if (o.timer) o.timer->cancel();
    std::exchange(o.on_msg, nullptr)({}, std::move(out));
    return true;
  }
  bool more = false;
  read_result r;
  r.bytes = take_bytes(static_cast<std::byte*>(o.buf.data()), o.buf.size(), msg_mode, more);
  r.more_data = more;
  if (!more) ack_leading_flushes();
  if (o.timer) o.timer->cancel();
  std::exchange(o.on_some, nullptr)({}, r);
  return true;
}

void async_pipe::deliver() {
  while (!readers_.empty()) {
    auto o = std::move(readers_.front());
    readers_.erase(readers_.begin());
    if (!serve_reader(*o)) {
      readers_.insert(readers_.begin(), std::move(o));
      break;
    }
  }
  ack_leading_flushes();
  // A remote peer learns that all it sent has been consumed without waiting
  // for our next call (its flush needs that; over a network nothing else can
  // tell it): one consumed frame, once the application has taken everything.
  // Only data consumed calls for one: a receipt for the peer's receipts
  // would call for another, and so on.
  const bool caught_up = inbox_head_ == inbox_.size() && !rd_.mid_frame() && !eof_ && !rx_err_;
  if (auto due = receipts_.due(p_.peer.is_remote(), caught_up, rd_.offset())) {
    receipt_due_ = *due;
    receipts_.sent(*due);
    defer_receipt();
  }
  start_tx(); // acknowledgements (and a receipt) owed since the last write
  // Flushers whose acknowledgement has arrived; or that cannot get one.
  for (std::size_t i = 0; i < flushers_.size();) {
    auto& f = *flushers_[i];
    std::error_code ec;
    std::string detail;
    if (flushes_.answered(f.target, f.pos_known ? std::optional(f.pos) : std::nullopt)) {
    } else if ((ec = rx_state_error(detail))) {
    } else if (inbox_bytes_ >= lookahead_limit) {
      ec = err(errc::invalid_state);
      detail = "flush cannot see the peer's acknowledgement behind " + std::to_string(inbox_bytes_) +
               " unread bytes; receive them first";
    } else {
      ++i;
      continue;
    }
    auto taken = std::move(flushers_[i]);
    flushers_.erase(flushers_.begin() + static_cast<std::ptrdiff_t>(i));
    finish(*taken, ec, detail);
  }
}

// A receipt that falls due as a read completes waits up to receipt_delay
// before it goes alone: a write started meanwhile (the next request of a
// request/response loop, which comes from another thread as often as not)
// carries it in the same system call and TLS record, instead of one more
// of each, and one more wake-up of every hop to the peer, per round trip.
// One timer per window, never cancelled by a write that took the receipt:
// it then finds nothing due. The peer's flush frames are acknowledged at
// once regardless.
void async_pipe::defer_receipt() {
  if (receipt_deferred_) return;
  receipt_deferred_ = true;
  if (!receipt_timer_) receipt_timer_ = std::make_unique<net::steady_timer>(strand_);
  receipt_timer_->expires_after(receipt_delay);
  receipt_timer_->async_wait([self = shared_from_this()](const net_error_code& ec) {
    self->receipt_deferred_ = false;
    if (!ec) self->start_tx();
  });
}

void async_pipe::kick_once() {
  deliver();
  if (rx_wanted()) start_rx();
}

bool async_pipe::rx_wanted() const noexcept {
  if (!is_open() || eof_ || rx_err_ || rx_active_) return false;
  // A peer that sends flushes but does not read our acknowledgements is not
  // read any further until it does: what it can make us owe stays bounded.
  if (acks_owed_ * framing::control_frame_cost >= p_.max_queued) return false;
  if (rd_.in_data() || !inbox_has_data()) return true; // a message begun is read to its end
  return !flushers_.empty() && inbox_bytes_ < lookahead_limit;
}

void async_pipe::start_rx() {
  rx_active_ = true;
  // Always a readiness wait, never a read into a buffer sized in advance: a
  // large frame's buffer grows only once its bytes are there to read.
  stream_.async_wait_read([self = shared_from_this()](const std::error_code& ec) { self->on_readable(ec); });
}

void async_pipe::on_readable(const std::error_code& ec) {
  rx_active_ = false;
  if (closed_) return;
  if (ec) {
    if (ec != net_error(net::error::operation_aborted)) rx_fail(io_error(ec), stream_.error_detail(ec, "reading the pipe failed: "));
    kick();
    return;
  }
  pull();
  kick();
}

void async_pipe::pull() {
  try {
    read_available();
  } catch (const std::bad_alloc&) {
    // An allocation this peer caused failed: it ends this connection only.
    rx_fail(no_memory_error(), "out of memory receiving from the peer; the connection is closed");
  }
}

// Byte read mode returns everything the pipe holds, as ReadFile does, not
// just the messages the inbox happens to hold: what the kernel has is read
// (without waiting) until the inbox holds what the reader can take. Reading
// stops at the reader's size, so what a peer can make us hold is unchanged.
void async_pipe::top_up(std::size_t want) {
  auto held = [this] { return inbox_bytes_ - (inbox_head_ < inbox_.size() ? inbox_[inbox_head_].off : 0); };
  // Bounded by the bytes read, not only by the bytes held: empty messages
  // add nothing to hold, and a peer that keeps sending them must not hold
  // the strand (or grow the inbox) for ever.
  const auto start = rd_.offset();
  while (held() < want && rd_.offset() - start < want && !eof_ && !rx_err_ && is_open()) {
    auto before = rd_.offset();
    pull();
    if (rd_.offset() == before) return;
  }
}

void async_pipe::read_available() {
  std::byte* buf = scratch();
  for (int rounds = 0; rounds < 4; ++rounds) {
    std::error_code rec;
    if (rd_.in_data() && msg_got_ < msg_.size()) {
      // The rest of a message goes straight into it, without a trip back
      // through the reactor while the kernel has more of it; its buffer has
      // grown only with what arrived (framing::room_for).
      std::size_t n = stream_.read_some(msg_.data() + msg_got_, msg_.size() - msg_got_, rec);
      if (rec == net_error(net::error::would_block) || rec == net_error(net::error::try_again)) break;
      if (rec) {
        if (rec == net_error(net::error::eof)) eof_ = true;
        else rx_fail(io_error(rec), stream_.error_detail(rec, "reading the pipe failed: "));
        break;
      }
      touch();
      msg_got_ += n;
      rd_.took(n);
      if (rd_.left() > 0) continue;
      end_message();
      break;
    }
    // With nothing pending, a modest first read: if a large frame follows,
    // the rest of it then lands in its message without passing through here.
    std::size_t want = rounds == 0 && !rd_.mid_frame() ? header_read : scratch_size;
    if (rd_.in_data()) want = std::min<std::size_t>(want, rd_.left()); // its buffer is full: grow by what is here
    std::size_t n = stream_.read_some(buf, want, rec);
    if (rec == net_error(net::error::would_block) || rec == net_error(net::error::try_again)) break;
    if (rec == net_error(net::error::eof)) {
      eof_ = true;
      break;
    }
    if (rec) {
      rx_fail(io_error(rec), stream_.error_detail(rec, "reading the pipe failed: "));
      break;
    }
    touch();
    parse(buf, n);
    if (inbox_has_data() || (n < want && !rd_.in_data())) break;
  }
}

// Takes the peer's bytes: control frames act at once, data frames become
// inbox messages. A header alone commits nothing: a message's buffer grows
// with its payload as it arrives.
void async_pipe::parse(const std::byte* data, std::size_t n) {
  std::size_t pos = 0;
  while (pos < n) {
    if (rd_.in_data()) {
      std::size_t c = std::min<std::size_t>(rd_.left(), n - pos);
      if (msg_got_ + c > msg_.size()) msg_.resize(framing::room_for(msg_got_ + c, msg_got_ + rd_.left()));
      std::memcpy(msg_.data() + msg_got_, data + pos, c);
      msg_got_ += c;
      rd_.took(c);
      pos += c;
      if (rd_.left() == 0) end_message();
      continue;
    }
    auto s = rd_.next(std::span(data + pos, n - pos));
    pos += s.used;
    switch (s.what) {
    case framing::event::need_more: return;
    case framing::event::error: rx_fail(rd_.error(), rd_.error_detail()); return;
    case framing::event::flush_ack: flushes_.acked(); break;
    case framing::event::consumed: flushes_.consumed(s.consumed); break;
    case framing::event::flush:
      // Flushes in a row are one marker; with nothing unread before them
      // they are owed at once.
      if (inbox_head_ == inbox_.size()) ++acks_owed_;
      else if (inbox_.back().flushes) ++inbox_.back().flushes;
      else inbox_.push_back({{}, 0, 1});
      break;
    case framing::event::data:
      msg_got_ = 0;
      if (s.length == 0) end_message();
      break;
    }
  }
}

// The current message is whole: into the inbox.
void async_pipe::end_message() {
  msg_.resize(msg_got_);
  inbox_bytes_ += msg_.size();
  inbox_.push_back({std::move(msg_), 0, 0});
  ++inbox_messages_;
  msg_ = {};
  msg_got_ = 0;
  rd_.end_data();
}

void async_pipe::rx_fail(std::error_code ec, std::string detail) {
  if (rx_err_) return;
  rx_err_ = ec;
  rx_detail_ = std::move(detail);
  broken_.store(true, std::memory_order_release);
  std::error_code ignore;
  socket_.shutdown(net::socket_base::shutdown_both, into(ignore)); // the stream cannot be resynchronised; tell the peer
}

// What both systems share (make_op, receive, read_some, connect_op), for this one.
template class async_pipe_base<async_pipe, async_pipe_op>;

} // namespace npipe::detail
