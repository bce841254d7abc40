// SPDX-License-Identifier: MIT
// The stream and its buffer, control frames, the receive side's owner, and
// sending, flushing and closing. The calls that take messages off the
// stream (read, receive, transact, peek) are in framed_calls.cpp.
#include "transport/framed_connection.hpp"

#include "core/framing.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace npipe::detail {

framed_connection::framed_connection(std::unique_ptr<byte_stream> stream, framed_params params)
    : s_(std::move(stream)), p_(std::move(params)), mode_(p_.mode), rd_(p_.max_message), tx_offset_(p_.sent_before) {
  // The receive buffer is allocated on first use, so idle connections stay small.
  rx_.assign(p_.initial);
  rend_ = p_.initial.size();
  p_.initial = {};
}

framed_connection::~framed_connection() { close(); }

void framed_connection::set_read_mode(npipe::read_mode m, std::error_code& ec) noexcept {
  ec.clear();
  if (!is_open()) {
    ec = err(errc::not_connected);
    return;
  }
  if (!pipe_rules::read_mode_allowed(p_.type, m)) {
    set_error_detail(pipe_rules::message_mode_needs_message_pipe);
    ec = err(errc::invalid_argument);
    return;
  }
  mode_.store(m, std::memory_order_relaxed);
}

// ---------------------------------------------------------------- receiving

std::size_t framed_connection::make_room(std::size_t limit) {
  if (rx_.size() < rx_chunk) rx_.resize(rx_chunk);
  if (rpos_ == rend_) rpos_ = rend_ = 0;
  if (rend_ == rx_.size() && rpos_ > 0) {
    std::memmove(rx_.data(), rx_.data() + rpos_, rend_ - rpos_);
    rend_ -= rpos_;
    rpos_ = 0;
  }
  if (rend_ == rx_.size() && rx_.size() < limit) rx_.resize(std::min(limit, rx_.size() * 2));
  return rx_.size() - rend_;
}

bool framed_connection::fill(deadline dl, std::error_code& ec, std::size_t limit) {
  if (rx_err_) {
    ec = rx_err_;
    return false;
  }
  std::size_t room = make_room(std::max(limit, rx_chunk));
  // Looking for a header with nothing buffered: ask for a modest amount, so a
  // large payload that follows goes straight into the caller's buffer.
  if (!rd_.in_data() && rpos_ == rend_ && limit == 0) room = std::min(room, header_read);
  if (room == 0) {
    set_error_detail("more than " + std::to_string(rx_.size()) + " bytes are waiting unread; read them first");
    ec = err(errc::invalid_state);
    return false;
  }
  std::size_t n = 0;
  if (!read_into(std::span(rx_.data() + rend_, room), dl, n, ec)) return false;
  rend_ += n;
  return true;
}

bool framed_connection::read_into(std::span<std::byte> dst, deadline dl, std::size_t& n, std::error_code& ec) {
  if (eof_) {
    ec = err(is_open() ? errc::broken_pipe : errc::not_connected);
    return false;
  }
  // With a deadline, wait first: a reply we are waiting for is rarely there
  // yet, and poll + recv beats recv (EAGAIN) + poll + recv. Without one, a
  // blocking recv sleeps in the kernel: one system call.
  if (!dl.never() && !wait_readable(dl, ec)) return false;
  for (;;) {
    auto r = dl.never() ? s_->read_wait(dst, ec) : s_->read_some(dst, ec);
    switch (r.status) {
    case io_status::ok: n = r.bytes; return true;
    case io_status::eof:
      eof_ = true;
      peer_closed_.store(true, std::memory_order_release);
      ec = err(is_open() ? errc::broken_pipe : errc::not_connected);
      return false;
    case io_status::error: rx_err_ = ec; return false;
    case io_status::would_block:
      if (!wait_readable(dl, ec)) return false;
    }
  }
}

void framed_connection::fill_nonblocking(std::size_t limit) {
  while (!eof_ && !rx_err_) {
    std::size_t room = make_room(limit);
    if (room == 0) return;
    std::error_code ec;
    auto r = s_->read_some(std::span(rx_.data() + rend_, room), ec);
    if (r.status == io_status::ok) {
      rend_ += r.bytes;
      if (r.bytes < room) return;
    } else if (r.status == io_status::eof) {
      eof_ = true;
      peer_closed_.store(true, std::memory_order_release);
    } else if (r.status == io_status::error) {
      rx_err_ = ec;
    } else {
      return;
    }
  }
}

// Byte read mode returns everything the pipe holds, as ReadFile does, not
// just what an earlier read happened to bring into the buffer (the handshake
// can bring the first message with the reply). One non-blocking read, into
// the buffer's free room only: it grows nothing. `budget` is what one read
// may still take this way (the caller's size): a peer that keeps sending
// empty messages cannot hold the reader.
bool framed_connection::top_up(std::size_t& budget) {
  if (eof_ || rx_err_ || budget == 0) return false;
  std::size_t before = buffered();
  fill_nonblocking(0);
  std::size_t added = buffered() - before;
  budget -= std::min(added, budget);
  return added > 0;
}

bool framed_connection::read_direct(std::byte* out, std::size_t want, deadline dl, std::size_t& n,
                                    std::error_code& ec) {
  // Precondition: nothing buffered.
  rpos_ = rend_ = 0;
  return read_into(std::span(out, want), dl, n, ec);
}

bool framed_connection::wait_readable(deadline dl, std::error_code& ec) {
  if (s_->wait(false, dl, ec)) {
    if (is_open()) return true;
    ec = err(errc::not_connected);
  } else if (!ec) {
    ec = err(errc::timed_out);
  }
  return false;
}

void framed_connection::count_ack() {
  std::lock_guard lk(state_mu_);
  flushes_.acked();
  state_cv_.notify_all();
}

// Consumes control frames at the head of the buffer; stops at a data frame
// (whose header it consumes; with !take_data without entering its payload)
// or when the buffer ends inside a header.
framed_connection::head_status framed_connection::head(deadline dl, std::error_code& ec, bool take_data) {
  for (;;) {
    if (rx_err_) {
      ec = rx_err_;
      return head_status::error;
    }
    auto s = rd_.next(std::span(rx_.data() + rpos_, buffered()), !take_data);
    rpos_ += s.used;
    switch (s.what) {
    case framing::event::need_more: return head_status::need_more;
    case framing::event::data: return head_status::data;
    case framing::event::error:
      set_error_detail(rd_.error_detail());
      ec = rx_err_ = rd_.error();
      broken_.store(true, std::memory_order_release);
      s_->shutdown(); // the stream cannot be resynchronised; tell the peer
      return head_status::error;
    case framing::event::flush: {
      std::error_code wec; // a peer that cannot take the ack is gone; its own calls will say so
      send_frame(protocol::frame_type::flush_ack, {}, dl, wec);
      break;
    }
    case framing::event::flush_ack:
      if (s.at >= ack_scan_) count_ack();
      break;
    case framing::event::consumed: note_consumed(s.consumed); break;
    }
  }
}

void framed_connection::note_consumed(std::uint64_t offset) {
  std::lock_guard lk(state_mu_);
  if (flushes_.consumed(offset)) state_cv_.notify_all();
}

// A remote peer learns that everything it sent has been consumed without
// waiting for this end's next call (its flush needs that; over a network
// nothing else could tell it): once the application has taken all that was
// received, one small consumed frame goes out, if the socket takes it now
// and no writer is busy (else at the next read).
void framed_connection::send_receipt() noexcept {
  // Only data consumed calls for one: a receipt for the peer's receipts
  // would call for another, and so on.
  const bool caught_up =
      buffered() == 0 && !rd_.mid_frame() && partial_.empty() && !debt_.any() && !eof_ && !rx_err_;
  auto due = receipts_.due(p_.peer.is_remote(), caught_up, rd_.offset());
  if (!due) return;
  const std::uint64_t offset = *due;
  std::unique_lock lk(tx_mu_, std::try_to_lock);
  if (!lk.owns_lock() || tx_broken_) return;
  std::error_code ec;
  if (!s_->wait(true, deadline::after(no_wait), ec)) return; // full: a frame might go out half
  auto frame = protocol::encode_consumed(offset);
  std::span<const std::byte> bufs[1] = {frame};
  send_all(bufs, deadline::after(no_wait), ec);
  if (!ec) {
    tx_offset_ += frame.size();
    receipts_.sent(offset);
  }
}

bool framed_connection::rx_owner::acquire(deadline dl, std::error_code& ec) {
  std::unique_lock lk(c_.state_mu_);
  auto free = [&] { return !c_.rx_busy_; };
  if (dl.never()) c_.state_cv_.wait(lk, free);
  else if (!c_.state_cv_.wait_until(lk, dl.at, free)) {
    ec = err(errc::timed_out);
    return false;
  }
  c_.rx_busy_ = owned_ = true;
  return true;
}

bool framed_connection::rx_owner::try_acquire() {
  std::lock_guard lk(c_.state_mu_);
  if (c_.rx_busy_) return false;
  c_.rx_busy_ = owned_ = true;
  return true;
}

void framed_connection::rx_owner::release() {
  if (!owned_) return;
  owned_ = false;
  std::lock_guard lk(c_.state_mu_);
  c_.rx_busy_ = false;
  c_.state_cv_.notify_all();
}

// An allocation the peer caused (a large message, read-ahead) that fails
// ends this connection only: the stream cannot be resynchronised.
void framed_connection::out_of_memory(std::error_code& ec) noexcept {
  if (!rx_err_) {
    rx_err_ = no_memory_error();
    set_error_detail("out of memory receiving from the peer; the connection is closed");
  }
  ec = rx_err_;
  broken_.store(true, std::memory_order_release);
  s_->shutdown();
}

// ------------------------------------------------------------------ sending

void framed_connection::send_all(std::span<const std::span<const std::byte>> bufs, deadline dl, std::error_code& ec) {
  std::span<const std::byte> parts[2];
  std::size_t count = std::min<std::size_t>(bufs.size(), 2);
  std::copy_n(bufs.begin(), count, parts);
  std::size_t first = 0;
  bool sent_any = false;
  while (first < count) {
    auto pending = std::span(parts + first, count - first);
    auto r = dl.never() ? s_->write_wait(pending, ec) : s_->write_some(pending, ec);
    if (r.status == io_status::ok) {
      sent_any = true;
      std::size_t n = r.bytes;
      while (first < count && n >= parts[first].size()) n -= parts[first++].size();
      if (first < count) parts[first] = parts[first].subspan(n);
      continue;
    }
    if (r.status == io_status::would_block) {
      if (s_->wait(true, dl, ec)) continue;
      if (!ec) ec = err(errc::timed_out);
    }
    if (!ec) ec = err(errc::broken_pipe);
    // A writer woken by close() from another thread: this end was closed
    // here, whatever the socket said (EPIPE after our own shutdown).
    if (!is_open()) ec = err(errc::not_connected);
    if (sent_any || ec != errc::timed_out) {
      // A torn frame would desynchronise the peer; this connection is done.
      tx_broken_ = true;
      broken_.store(true, std::memory_order_release);
      s_->shutdown();
    }
    return;
  }
}

void framed_connection::send_frame(protocol::frame_type t, std::span<const std::byte> payload, deadline dl,
                                   std::error_code& ec, std::uint64_t* at) {
  ec.clear();
  std::lock_guard lk(tx_mu_);
  // Over TCP (and through a gateway) the peer's end of stream means it has
  // gone, and the first write after that would still "succeed" (the reset
  // comes later): say so at once. A local peer that only shut down its
  // sending side can still read its replies; the kernel reports a real
  // close on the write itself.
  if (tx_broken_ || (peer_closed_.load(std::memory_order_acquire) && s_->end_means_gone())) {
    ec = err(errc::broken_pipe);
    return;
  }
  auto hdr = protocol::encode_frame_header(t, static_cast<std::uint32_t>(payload.size()));
  std::span<const std::byte> bufs[2] = {hdr, payload};
  if (at) *at = tx_offset_;
  send_all(std::span(bufs, payload.empty() ? 1 : 2), dl, ec);
  if (!ec) tx_offset_ += hdr.size() + payload.size();
}

void framed_connection::write(std::span<const std::byte> data, deadline dl, std::error_code& ec) noexcept {
  ec.clear();
  if (!is_open()) {
    ec = err(errc::not_connected);
    return;
  }
  std::string detail;
  if ((ec = framing::check_send(p_.type, data.size(), p_.peer_max_message, detail))) {
    set_error_detail(detail);
    return;
  }
  framing::frame_cuts cuts(p_.type, data, p_.peer_max_message);
  for (std::span<const std::byte> part; !ec && cuts.next(part);) send_frame(protocol::frame_type::data, part, dl, ec);
}

// Counts the acknowledgements (and receipts) buffered behind unread data,
// for a flusher, without taking anything from the buffer. The walk goes on
// from where the last one stopped (a copy of the reader, ahead of it).
void framed_connection::scan_for_acks() {
  if (scan_.offset() < rd_.offset()) scan_ = rd_;
  std::size_t pos = rpos_ + static_cast<std::size_t>(scan_.offset() - rd_.offset());
  for (;;) {
    if (scan_.in_data()) {
      std::size_t n = std::min<std::size_t>(scan_.left(), rend_ - pos);
      pos += n;
      scan_.took(n);
      if (scan_.left() > 0) break;
      scan_.end_data();
      ack_scan_ = std::max(ack_scan_, scan_.offset());
      continue;
    }
    auto s = scan_.next(std::span(rx_.data() + pos, rend_ - pos));
    pos += s.used;
    if (s.what == framing::event::need_more || s.what == framing::event::error) break; // the reader will report it
    if (s.what == framing::event::flush_ack && s.at >= ack_scan_) count_ack();
    if (s.what == framing::event::consumed) note_consumed(s.consumed);
    if (s.what != framing::event::data) ack_scan_ = std::max(ack_scan_, scan_.offset());
  }
}

void framed_connection::flush(deadline dl, std::error_code& ec) noexcept {
  ec.clear();
  if (!is_open()) {
    ec = err(errc::not_connected);
    return;
  }
  std::uint64_t target;
  {
    std::lock_guard tx(tx_mu_);
    if (tx_broken_) {
      ec = err(errc::broken_pipe);
      return;
    }
    // Fast path: the peer has already taken everything off the socket.
    if (s_->peer_took_everything()) return;
  }
  {
    std::lock_guard lk(state_mu_);
    target = flushes_.issue();
  }
  // Everything before the flush frame is the first `pos` bytes of our
  // stream: a remote peer's consumed frame for them answers it too.
  std::uint64_t pos = 0;
  send_frame(protocol::frame_type::flush, {}, dl, ec, &pos);
  if (ec) return;
  auto answered = [&] { return flushes_.answered(target, pos); };
  for (;;) {
    rx_owner rx(*this);
    {
      std::unique_lock lk(state_mu_);
      // Wait until our ack has been counted, or we may read the socket ourselves.
      auto ready = [&] { return answered() || !rx_busy_ || !is_open(); };
      if (dl.never()) state_cv_.wait(lk, ready);
      else if (!state_cv_.wait_until(lk, dl.at, ready)) {
        ec = err(errc::timed_out);
        return;
      }
      if (answered()) return;
      if (!is_open()) {
        ec = err(errc::not_connected);
        return;
      }
    }
    if (!rx.try_acquire()) continue;
    scan_for_acks();
    {
      std::lock_guard lk(state_mu_);
      if (answered()) return;
    }
    bool filled = false;
    try {
      filled = fill(dl, ec, lookahead_limit);
    } catch (const std::bad_alloc&) {
      out_of_memory(ec);
      return;
    }
    if (!filled) {
      if (ec == errc::invalid_state)
        set_error_detail("flush cannot see the peer's acknowledgement behind " + std::to_string(buffered()) +
                         " unread bytes; read them first");
      return;
    }
  }
}

void framed_connection::close() noexcept {
  if (!open_.exchange(false, std::memory_order_acq_rel)) return;
  // If our application has read everything the peer sent before a flush,
  // acknowledge it now, so the peer's flush() succeeds instead of breaking.
  if (rx_owner rx(*this); rx.try_acquire()) {
    try {
      fill_nonblocking(rx_.size());
    } catch (const std::bad_alloc&) {
    }
    if (!rd_.in_data() && partial_.empty()) {
      std::error_code ignore;
      head(deadline::after(timeout(100)), ignore, false);
    }
  }
  s_->shutdown();
  {
    std::lock_guard lk(state_mu_);
    state_cv_.notify_all();
  }
  if (p_.on_close) {
    auto f = std::move(p_.on_close);
    p_.on_close = nullptr;
    f();
  }
}

} // namespace npipe::detail
