// SPDX-License-Identifier: MIT
// framed_connection: the calls that take messages off the stream (read,
// receive, transact, peek) and the replies owed to transacts that gave up.
// The stream, control frames and sending are in framed_connection.cpp.
#include "transport/framed_connection.hpp"

#include "core/framing.hpp"

#include <algorithm>
#include <cstring>

namespace npipe::detail {

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
  std::size_t top_budget = buf.size(); // byte mode: how much reading on without waiting may take
  for (;;) {
    if (!rd_.in_data()) {
      if (msg && started) break;
      auto st = head(dl, ec);
      if (st == head_status::data) {
        started = true;
        continue;
      }
      if (st == head_status::error) break;
      if (!msg && got > 0) {
        if (top_up(top_budget)) continue;
        break;
      }
      if (!fill(dl, ec)) break;
      continue;
    }
    if (rd_.left() == 0) {
      rd_.end_data();
      continue;
    }
    if (got == buf.size()) break;
    if (buffered() == 0 && !msg && got > 0 && !top_up(top_budget)) break;
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

} // namespace npipe::detail
