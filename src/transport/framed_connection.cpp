// SPDX-License-Identifier: MIT
#include "transport/framed_connection.hpp"

#include "core/framing.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace npipe::detail {
namespace {

constexpr std::size_t rx_chunk = 64u << 10;      // normal receive buffer
constexpr std::size_t direct_read_min = 16u << 10; // read straight into the caller's buffer from here on
constexpr std::size_t header_read = 16u << 10;     // a read that looks for a frame header asks for this much
constexpr std::size_t lookahead_limit = 4u << 20; // how far flush() and peek() may buffer ahead

std::error_code err(errc e) { return make_error_code(e); }

} // namespace

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

// Copies payload of the current frame: from the buffer, or straight from the
// stream when the caller wants a lot and nothing is buffered.
bool framed_connection::payload(std::byte* out, std::size_t want, deadline dl, std::size_t& n, std::error_code& ec) {
  want = std::min<std::size_t>(want, rd_.left());
  if (buffered() == 0) {
    if (want >= direct_read_min) {
      if (!read_direct(out, want, dl, n, ec)) return false;
      rd_.took(n);
      return true;
    }
    if (!fill(dl, ec)) return false;
  }
  n = std::min(want, buffered());
  std::memcpy(out, rx_.data() + rpos_, n);
  rpos_ += n;
  rd_.took(n);
  return true;
}

// Discards the replies of transacts that gave up (pipe_rules::reply_debt),
// so that what is read next is not one of them. False, with ec, when they
// have not all arrived by `dl` (progress is kept for the next call).
bool framed_connection::settle_debt(deadline dl, std::error_code& ec) {
  if (!debt_.any()) return true;
  while (debt_.any()) {
    if (debt_.in_current) {
      partial_.clear();
      while (rd_.left() > 0) {
        if (buffered() == 0 && !fill(dl, ec)) return false;
        std::size_t n = std::min<std::size_t>(rd_.left(), buffered());
        rpos_ += n;
        rd_.took(n);
      }
      rd_.end_data();
      debt_.in_current = false;
      continue;
    }
    auto st = head(dl, ec); // control frames, up to the next data frame
    if (st == head_status::data) {
      --debt_.owed;
      debt_.in_current = true;
      continue;
    }
    if (st == head_status::error || !fill(dl, ec)) return false;
  }
  std::error_code ignore;
  head(dl, ignore, false); // acknowledge flushes the discarded replies satisfied
  return true;
}

read_result framed_connection::read_locked(std::span<std::byte> buf, deadline dl, std::error_code& ec) {
  if (!settle_debt(dl, ec)) return {};
  const bool msg = mode_.load(std::memory_order_relaxed) == npipe::read_mode::message;
  std::size_t got = 0;
  if (!partial_.empty()) { // the head of the current message, left by a receive() that timed out
    got = std::min(buf.size(), partial_.size());
    std::memcpy(buf.data(), partial_.data(), got);
    partial_.erase(partial_.begin(), partial_.begin() + static_cast<std::ptrdiff_t>(got));
    if (msg && !partial_.empty()) return {got, true};
  }
  bool started = got > 0 || rd_.in_data(); // a message already begun ends this read when it ends
  for (;;) {
    if (!rd_.in_data()) {
      if (msg && started) break;
      auto st = head(dl, ec);
      if (st == head_status::data) {
        started = true;
        continue;
      }
      if (st == head_status::error || (!msg && got > 0)) break;
      if (!fill(dl, ec)) break;
      continue;
    }
    if (rd_.left() == 0) {
      rd_.end_data();
      continue;
    }
    if (got == buf.size()) break;
    if (buffered() == 0 && !msg && got > 0) break;
    std::size_t n = 0;
    if (!payload(buf.data() + got, buf.size() - got, dl, n, ec)) break;
    got += n;
  }
  if (ec) {
    if (got == 0) return {0, false};
    ec.clear(); // deliver what we have; the failure repeats on the next call
  }
  if (!rd_.in_data()) { // acknowledge flushes the application has now satisfied
    std::error_code ignore;
    head(dl, ignore, false);
  }
  // A partial message is not a failure: read_result::more_data says so (decisions.md, 23).
  ec.clear();
  return {got, msg && rd_.in_data()};
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

read_result framed_connection::read(std::span<std::byte> buf, deadline dl, std::error_code& ec) noexcept {
  ec.clear();
  if (!is_open()) {
    ec = err(errc::not_connected);
    return {};
  }
  rx_owner rx(*this);
  if (!rx.acquire(dl, ec)) return {};
  try {
    auto r = read_locked(buf, dl, ec);
    if (r.bytes > 0 || !ec) {
      receipts_.data_taken();
      send_receipt();
    }
    return r;
  } catch (const std::bad_alloc&) {
    out_of_memory(ec);
    return {};
  }
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

std::vector<std::byte> framed_connection::receive(deadline dl, std::error_code& ec) {
  try {
    return receive_locked(dl, ec);
  } catch (const std::bad_alloc&) {
    out_of_memory(ec);
    return {};
  }
}

std::vector<std::byte> framed_connection::receive_locked(deadline dl, std::error_code& ec) {
  ec.clear();
  if (!is_open()) {
    ec = err(errc::not_connected);
    return {};
  }
  rx_owner rx(*this);
  if (!rx.acquire(dl, ec)) return {};
  auto m = receive_message(dl, ec);
  if (!ec) {
    receipts_.data_taken();
    send_receipt();
  }
  return m;
}

// receive() with the receive side owned.
std::vector<std::byte> framed_connection::receive_message(deadline dl, std::error_code& ec) {
  if (!settle_debt(dl, ec)) return {};
  std::vector<std::byte> out;
  if (mode_.load(std::memory_order_relaxed) == npipe::read_mode::byte) {
    out.resize(rx_chunk);
    auto r = read_locked(out, dl, ec);
    out.resize(r.bytes);
    return out;
  }
  bool have = rd_.in_data() || !partial_.empty();
  while (!have) {
    auto st = head(dl, ec);
    if (st == head_status::data) have = true;
    else if (st == head_status::error || !fill(dl, ec)) return {};
  }
  // The frame length was checked against max_message before we got here,
  // but it is only the peer's word: the message's buffer grows as its
  // bytes arrive (framing::room_for), so a header alone commits nothing.
  out = std::move(partial_);
  partial_.clear();
  std::size_t got = out.size();
  const std::size_t total = got + rd_.left();
  auto keep = [&] {
    out.resize(got);
    partial_ = std::move(out); // a later receive() or read() continues the message
  };
  while (rd_.left() > 0) {
    if (got == out.size()) {
      if (buffered() == 0 && !wait_readable(dl, ec)) {
        keep();
        return {};
      }
      out.resize(framing::room_for(got, total));
    }
    std::size_t n = 0;
    if (!payload(out.data() + got, out.size() - got, dl, n, ec)) {
      keep();
      return {};
    }
    got += n;
  }
  rd_.end_data();
  std::error_code ignore;
  head(dl, ignore, false);
  return out;
}

bool framed_connection::data_pending() {
  if (rd_.in_data() || rd_.holds_data_start() || !partial_.empty()) return true;
  fill_nonblocking(rx_.size());
  framing::reader scan = rd_; // walks the buffer without taking from it
  std::size_t pos = rpos_;
  for (;;) {
    auto s = scan.next(std::span(rx_.data() + pos, rend_ - pos));
    pos += s.used;
    if (s.what == framing::event::data || s.what == framing::event::error) return true; // an error: let the reader report it
    if (s.what == framing::event::need_more) return scan.holds_data_start(); // the start of a frame
  }
}

std::vector<std::byte> framed_connection::transact(std::span<const std::byte> request, deadline dl,
                                                   std::error_code& ec) {
  ec.clear();
  if (!is_open()) {
    ec = err(errc::not_connected);
    return {};
  }
  if (auto why = pipe_rules::transact_refusal(p_.type, read_mode(), false)) {
    set_error_detail(why);
    ec = err(errc::invalid_state);
    return {};
  }
  // The receive side stays ours from the unread check to the reply, so no
  // other reader can take the reply (or slip a message in before it).
  rx_owner rx(*this);
  if (!rx.acquire(dl, ec)) return {};
  bool pending = false;
  try {
    // Replies owed to transacts that gave up and are here already go first;
    // ones still on their way will be discarded as they come, ahead of ours.
    std::error_code ignore;
    settle_debt(deadline::after(no_wait), ignore);
    pending = !debt_.any() && data_pending();
  } catch (const std::bad_alloc&) {
    out_of_memory(ec);
    return {};
  }
  if (auto why = pipe_rules::transact_refusal(p_.type, read_mode(), pending)) {
    set_error_detail(why);
    ec = err(errc::invalid_state);
    return {};
  }
  write(request, dl, ec);
  if (ec) return {};
  std::vector<std::byte> reply;
  try {
    reply = receive_message(dl, ec);
    if (!ec) {
      receipts_.data_taken();
      send_receipt();
    }
  } catch (const std::bad_alloc&) {
    out_of_memory(ec);
    return {};
  }
  if (ec && is_open() && !rx_err_ && !eof_) {
    // The request went out; its reply may still come. It is owed, not lost:
    // discarded when it arrives, never handed to a later call.
    bool mid = rd_.in_data() || !partial_.empty();
    debt_.gave_up(mid);
    partial_.clear();
  }
  return reply;
}

peek_result framed_connection::peek(std::span<std::byte> buf, std::error_code& ec) noexcept {
  ec.clear();
  if (!is_open()) {
    ec = err(errc::not_connected);
    return {};
  }
  rx_owner rx(*this);
  if (!rx.try_acquire()) {
    set_error_detail("another thread is reading this pipe");
    ec = err(errc::invalid_state);
    return {};
  }
  try {
    fill_nonblocking(std::max(lookahead_limit, rx_chunk));
    // A reply owed to a transact that gave up is not shown: it is discarded
    // once here, and what comes after it is what a read would see.
    if (debt_.any() && !settle_debt(deadline::after(no_wait), ec)) {
      peek_result none;
      if (ec != errc::timed_out) return none;
      ec.clear();
      return none;
    }
  } catch (const std::bad_alloc&) {
    out_of_memory(ec);
    return {};
  }
  if (!rd_.in_data()) head(deadline::after(no_wait), ec);
  ec.clear();
  const bool msg = mode_.load(std::memory_order_relaxed) == npipe::read_mode::message;
  peek_result r;
  auto take = [&](const std::byte* p, std::size_t n) {
    r.total_available += n;
    std::size_t c = std::min(n, buf.size() - r.bytes_read);
    if (c > 0) std::memcpy(buf.data() + r.bytes_read, p, c);
    r.bytes_read += c;
  };
  take(partial_.data(), partial_.size());
  std::size_t pos = rpos_;
  framing::reader scan = rd_; // walks the buffer without taking from it
  bool whole = true;          // every byte of the current frame is buffered
  auto take_payload = [&] {
    std::size_t n = std::min<std::size_t>(scan.left(), rend_ - pos);
    take(rx_.data() + pos, n);
    pos += n;
    scan.took(n);
    whole = scan.left() == 0;
  };
  if (scan.in_data()) {
    if (p_.type == pipe_type::message) r.left_this_message = partial_.size() + scan.left();
    take_payload();
  }
  if (msg) buf = buf.first(r.bytes_read); // message mode copies from the current message only
  while (whole) {
    auto s = scan.next(std::span(rx_.data() + pos, rend_ - pos));
    pos += s.used;
    if (s.what == framing::event::need_more || s.what == framing::event::error) break;
    if (s.what == framing::event::data) take_payload(); // control frames carry no message bytes
  }
  if (r.total_available == 0 && !rd_.in_data()) {
    if (rx_err_) ec = rx_err_;
    else if (eof_) ec = err(errc::broken_pipe);
  }
  return r;
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
