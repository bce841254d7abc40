// SPDX-License-Identifier: MIT
// Windows async pipe, receiving: one overlapped ReadFile at a time, only for
// a waiting receiver; ERROR_MORE_DATA and what a stopped read got (held_).
#include "runtime/async_pipe_win32_parts.hpp"
#include "runtime/async_pipe_base_impl.hpp"

#include "core/pipe_rules.hpp"
#include "transport/win32_util.hpp"

#include <algorithm>
#include <cstring>

namespace npipe::detail {
using namespace async_win32;

// ----------------------------------------------------------------- receiving

void async_pipe::kick_once() {
  // A read in progress writes into held_: serve nobody until it is back.
  // A completion may run inline (the server's sessions) and queue or
  // close: take the reader out of the queue while serving it. Once closed
  // (held_ is gone then) every reader gets not_connected at once.
  while (!readers_.empty() && !rx_active_) {
    auto o = std::move(readers_.front());
    readers_.erase(readers_.begin());
    if (!serve_reader(*o)) {
      readers_.insert(readers_.begin(), std::move(o));
      start_read(*readers_.front());
      break;
    }
  }
}

// Satisfies the reader from held_ if it can; true when it completed.
bool async_pipe::serve_reader(op& o) {
  // Replies owed to transacts that gave up go first (pipe_rules::reply_debt):
  // each is read like any message, then dropped.
  while (debt_.owed > 0) {
    if (held_ && !held_->more) {
      held_.reset();
      --debt_.owed;
      continue;
    }
    if (eof_ || rx_err_ || !is_open()) {
      debt_ = {}; // it will not come; the reader learns why below
      break;
    }
    return false; // read on (into held_)
  }
  const bool msg_mode = mode() == npipe::read_mode::message;
  if (held_) {
    auto& h = *held_;
    std::size_t avail = h.data.size() - h.off;
    const bool need_rest = h.more && (o.on_msg ? msg_mode : avail == 0);
    if (need_rest) {
      if (!eof_ && !rx_err_) return false;
      finish(o, rx_err_ ? rx_err_ : err(errc::broken_pipe),
             rx_err_ ? rx_detail_ : "the peer closed the pipe in the middle of a message");
      return true;
    }
    touch();
    if (o.on_msg) {
      std::vector<std::byte> out;
      if (msg_mode || avail <= byte_receive) {
        out = std::move(h.data);
        if (h.off) out.erase(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(h.off));
        held_.reset();
      } else {
        auto first = h.data.begin() + static_cast<std::ptrdiff_t>(h.off);
        out.assign(first, first + static_cast<std::ptrdiff_t>(byte_receive));
        h.off += byte_receive;
      }
      if (o.timer) o.timer->cancel();
      std::exchange(o.on_msg, nullptr)({}, std::move(out));
      return true;
    }
    read_result r;
    r.bytes = std::min(o.buf.size(), avail);
    if (r.bytes) std::memcpy(o.buf.data(), h.data.data() + h.off, r.bytes);
    h.off += r.bytes;
    const bool rest_held = h.off < h.data.size();
    r.more_data = msg_mode && (rest_held || h.more);
    if (!rest_held) {
      if (h.more) held_ = held_bytes{{}, 0, true}; // the rest is still in the pipe: the next read continues it
      else held_.reset();
    }
    if (o.timer) o.timer->cancel();
    std::exchange(o.on_some, nullptr)({}, r);
    return true;
  }
  std::error_code ec;
  std::string detail;
  if (rx_err_) {
    ec = rx_err_;
    detail = rx_detail_;
  } else if (eof_) {
    ec = err(errc::broken_pipe);
    detail = "the peer closed the pipe";
  } else if (!is_open()) {
    ec = err(errc::not_connected);
    detail = "the pipe is not open";
  }
  if (!ec) return false;
  finish(o, ec, detail);
  return true;
}

// One ReadFile into the tail of held_, sized for the waiting reader `o`.
void async_pipe::start_read(op& o) {
  const bool msg_mode = mode() == npipe::read_mode::message;
  std::size_t have = held_ ? held_->data.size() - held_->off : 0;
  std::size_t want;
  if (o.on_msg && msg_mode && !(held_ && held_->more)) {
    want = first_read; // most messages fit; a longer one says ERROR_MORE_DATA
  } else if (o.on_msg && msg_mode) {
    // The seed's loop: while ERROR_MORE_DATA, read on. PeekNamedPipe says how
    // much of the message is left, so the limit is checked before anything
    // is allocated for it.
    DWORD total = 0, left = 0;
    if (!::PeekNamedPipe(native(), nullptr, 0, nullptr, &total, &left)) total = left = 0;
    want = left > 0 ? left : byte_receive;
    if (have + left > p_.max_message) {
      rx_fail(err(errc::message_too_large), "the peer sent a message of at least " + std::to_string(have + left) +
                                                " bytes, over this end's limit of " +
                                                std::to_string(p_.max_message) + " bytes; the connection is closed");
      return;
    }
  } else if (o.on_msg) {
    want = byte_receive;
  } else {
    want = std::max<std::size_t>(o.buf.size(), 1);
  }
  want = std::min(want, max_write);
  if (!held_) held_.emplace();
  auto& h = *held_;
  if (h.off > 0 && h.off == h.data.size()) { // all taken: start over
    h.data.clear();
    h.off = 0;
  }
  rx_base_ = h.data.size();
  h.data.resize(rx_base_ + want);
  rx_active_ = true;
  std::byte* at = h.data.data() + rx_base_;
  HANDLE hd = native();
  rx_ov_ = start_overlapped(
      strand_, [&](OVERLAPPED* ov) { return ::ReadFile(hd, at, static_cast<DWORD>(want), nullptr, ov); },
      [self = shared_from_this()](const std::error_code& ec, std::size_t n) { self->on_read(ec, n); });
}

void async_pipe::on_read(const std::error_code& ec, std::size_t n) {
  rx_active_ = false;
  rx_ov_ = nullptr;
  if (closed_ || !held_) {
    held_.reset();
    kick(); // readers that came after the close
    return;
  }
  auto& h = *held_;
  h.data.resize(rx_base_ + n);
  DWORD e = win32_code(ec);
  const bool msg_mode = mode() == npipe::read_mode::message;
  if (e == 0 || e == ERROR_MORE_DATA) {
    touch();
    h.more = msg_mode && e == ERROR_MORE_DATA;
    // Byte read mode: an empty read carries nothing (a message pipe's
    // zero-length message is a message only in message read mode).
    if (!msg_mode && h.off == h.data.size()) held_.reset();
  } else if (peer_gone(e)) {
    eof_ = true;
    if (h.off == h.data.size() && !h.more) held_.reset();
  } else {
    std::string detail;
    auto fe = pipe_error(e, detail);
    rx_fail(fe, "reading the pipe failed: " + detail);
    return;
  }
  kick();
}

// The stream cannot go on (a message over the limit, a failed read): every
// receiver gets `ec`, and the pipe closes so the peer learns at once.
void async_pipe::rx_fail(std::error_code ec, std::string detail) {
  if (rx_err_) return;
  rx_err_ = ec;
  rx_detail_ = detail;
  close(ec, std::move(detail));
}

// What both systems share (make_op, receive, read_some, connect_op), for this one.
template class async_pipe_base<async_pipe, async_pipe_op>;

} // namespace npipe::detail
