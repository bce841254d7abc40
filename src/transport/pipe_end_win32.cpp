// SPDX-License-Identifier: MIT
// Windows local pipes: one connected pipe end (server or client side) over a
// genuine Win32 named-pipe handle. Every call is overlapped, so deadlines and
// close() from another thread work. See docs/semantics.md.

#include "core/pipe_rules.hpp"
#include "transport/win32_util.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>

namespace npipe::detail {
namespace {

// ------------------------------------------------------------ connection

class win32_connection final : public connection_impl {
public:
  /// `on_close`, if set, takes over the (disconnected) handle: a server
  /// reuses its instance for the next client, as Win32 servers do.
  win32_connection(HANDLE h, bool server_side, pipe_type type, npipe::read_mode mode, pipe_name name,
                   std::size_t max_message, peer_identity peer, std::function<void(HANDLE)> on_close)
      : h_(h), native_(h), server_side_(server_side), type_(type), mode_(mode), name_(std::move(name)),
        max_message_(max_message), peer_(std::move(peer)), on_close_(std::move(on_close)) {}
  ~win32_connection() override { close(); }

  bool is_open() const noexcept override { return open_.load(std::memory_order_acquire); }
  bool broken() const noexcept override { return broken_.load(std::memory_order_acquire); }
  pipe_type type() const noexcept override { return type_; }
  npipe::read_mode read_mode() const noexcept override { return mode_.load(std::memory_order_relaxed); }
  const peer_identity& peer() const noexcept override { return peer_; }
  const pipe_name& name() const noexcept override { return name_; }
  std::size_t peer_max_message_size() const noexcept override { return SIZE_MAX; }
  std::intptr_t native_handle() const noexcept override { return reinterpret_cast<std::intptr_t>(native_); }

  void set_read_mode(npipe::read_mode m, std::error_code& ec) noexcept override {
    ec.clear();
    if (!pipe_rules::read_mode_allowed(type_, m)) {
      set_error_detail(pipe_rules::message_mode_needs_message_pipe);
      ec = make_error_code(errc::invalid_argument);
      return;
    }
    DWORD mode = m == npipe::read_mode::message ? PIPE_READMODE_MESSAGE : PIPE_READMODE_BYTE;
    std::lock_guard lk(tx_mu_);
    if (!check_open(ec)) return;
    if (!::SetNamedPipeHandleState(h_, &mode, nullptr, nullptr)) {
      ec = win32_error(::GetLastError());
      return;
    }
    mode_.store(m, std::memory_order_relaxed);
  }

  void write(std::span<const std::byte> data, deadline dl, std::error_code& ec) noexcept override {
    ec.clear();
    if (!check_open(ec)) return;
    std::lock_guard lk(tx_mu_);
    if (!check_open(ec)) return;
    if (tx_broken_) {
      ec = make_error_code(errc::broken_pipe);
      return;
    }
    // A message pipe takes each WriteFile as one message; a byte pipe may
    // take it in parts, so loop (WriteFile takes at most 4 GiB at a time).
    do {
      DWORD chunk = static_cast<DWORD>(std::min<std::size_t>(data.size(), type_ == pipe_type::message
                                                                               ? data.size()
                                                                               : std::size_t(1) << 30));
      if (type_ == pipe_type::message && data.size() > 0xFFFFFFFFull) {
        set_error_detail("a message larger than 4 GiB cannot be written to a Win32 pipe");
        ec = make_error_code(errc::message_too_large);
        return;
      }
      DWORD n = 0, err = 0;
      auto r = overlapped(h_, tx_event_.get(), dl, [&](OVERLAPPED* ov) {
        return ::WriteFile(h_, data.data(), chunk, nullptr, ov);
      }, n, err);
      if (r == io_end::timed_out) {
        if (n > 0) break_send_side(); // part of a message went: the stream is torn
        ec = make_error_code(errc::timed_out);
        return;
      }
      if (r == io_end::failed) {
        ec = closed_error(err);
        break_send_side(); // the pipe refused the write: as on Linux, this end sends no more
        return;
      }
      data = data.subspan(n);
    } while (!data.empty());
  }

  read_result read(std::span<std::byte> buf, deadline dl, std::error_code& ec) noexcept override {
    ec.clear();
    if (!check_open(ec)) return {};
    std::lock_guard lk(rx_mu_);
    if (!check_open(ec)) return {};
    return read_locked(buf, dl, ec);
  }

  std::vector<std::byte> receive(deadline dl, std::error_code& ec) override {
    ec.clear();
    if (!check_open(ec)) return {};
    std::lock_guard lk(rx_mu_);
    if (!check_open(ec)) return {};
    return receive_locked(dl, ec);
  }

  // receive() with rx_mu_ held. A buffer the peer's message needs that
  // cannot be had ends this connection only, as on the other ends: its
  // start is gone, so nothing after it could be read as a whole message.
  std::vector<std::byte> receive_locked(deadline dl, std::error_code& ec) {
    try {
      return receive_message(dl, ec);
    } catch (const std::bad_alloc&) {
      partial_.clear();
      partial_more_ = false;
      set_error_detail("out of memory for the peer's message; the connection is closed");
      ec = no_memory_error();
      abort_io();
      return {};
    }
  }

  std::vector<std::byte> receive_message(deadline dl, std::error_code& ec) {
    if (!settle_debt(dl, ec)) return {};
    if (read_mode() == npipe::read_mode::byte) {
      std::vector<std::byte> out(64u << 10);
      auto r = read_locked(out, dl, ec);
      out.resize(r.bytes);
      return out;
    }
    // The seed's loop: read, and while ERROR_MORE_DATA, grow and read on.
    // PeekNamedPipe says how much is left, so the limit is checked before
    // anything is allocated for it.
    std::vector<std::byte> out = std::move(partial_);
    partial_.clear();
    std::size_t got = out.size();
    if (out.size() < 4096) out.resize(4096);
    for (;;) {
      auto r = read_locked(std::span(out.data() + got, out.size() - got), dl, ec);
      got += r.bytes;
      if (ec) {
        out.resize(got);
        if (got > 0) { // a later receive or read continues this message
          partial_ = std::move(out);
          partial_more_ = true;
        }
        return {};
      }
      if (!r.more_data) break;
      DWORD left = 0;
      if (!::PeekNamedPipe(h_, nullptr, 0, nullptr, nullptr, &left) || left == 0) left = 64u << 10;
      if (got + left > max_message_) {
        set_error_detail("the peer sent a message of at least " + std::to_string(got + left) +
                         " bytes, over this end's limit of " + std::to_string(max_message_) +
                         " bytes; the connection is closed");
        ec = make_error_code(errc::message_too_large);
        abort_io();
        return {};
      }
      out.resize(got + left);
    }
    ec.clear();
    out.resize(got);
    return out;
  }

  std::vector<std::byte> transact(std::span<const std::byte> request, deadline dl, std::error_code& ec) override {
    ec.clear();
    if (!check_open(ec)) return {};
    if (auto why = pipe_rules::transact_refusal(type_, read_mode(), false)) {
      set_error_detail(why);
      ec = make_error_code(errc::invalid_state);
      return {};
    }
    std::lock_guard rx(rx_mu_);
    if (!check_open(ec)) return {};
    // Replies owed to transacts that gave up and are here already go first;
    // ones still on their way are discarded as they come, ahead of ours.
    std::error_code ignore;
    settle_debt(deadline::after(no_wait), ignore);
    DWORD total = 0;
    bool unread =
        !debt_.any() && (!partial_.empty() || (::PeekNamedPipe(h_, nullptr, 0, nullptr, &total, nullptr) && total > 0));
    if (auto why = pipe_rules::transact_refusal(type_, read_mode(), unread)) {
      set_error_detail(why);
      ec = make_error_code(errc::invalid_state);
      return {};
    }
    // WriteFile, then the reply, rather than TransactNamedPipe: a deadline
    // that cancels TransactNamedPipe leaves unknown whether the request went
    // out, and with it whether a reply is owed (pipe_rules::reply_debt).
    write(request, dl, ec);
    if (ec) return {};
    auto reply = receive_locked(dl, ec);
    if (ec == errc::timed_out && is_open()) {
      debt_.gave_up(!partial_.empty());
      partial_.clear();
    }
    return reply;
  }

  peek_result peek(std::span<std::byte> buf, std::error_code& ec) noexcept override {
    ec.clear();
    if (!check_open(ec)) return {};
    std::lock_guard lk(rx_mu_);
    if (!check_open(ec)) return {};
    peek_result r;
    // A reply owed to a transact that gave up is not shown: it is discarded
    // once here, and what comes after it is what a read would see.
    if (debt_.any()) {
      std::error_code sec;
      if (!settle_debt(deadline::after(no_wait), sec)) {
        if (sec != errc::timed_out) ec = sec;
        return r;
      }
    }
    std::size_t from_partial = std::min(buf.size(), partial_.size());
    if (from_partial) std::memcpy(buf.data(), partial_.data(), from_partial);
    // Sizes first, then the copy: some implementations (Wine) count only
    // the bytes beyond those copied as "available".
    DWORD n = 0, total = 0, left = 0;
    if (!::PeekNamedPipe(h_, nullptr, 0, nullptr, &total, &left)) {
      DWORD e = ::GetLastError();
      if (partial_.empty()) ec = closed_error(e);
    } else if (buf.size() > from_partial && total > 0) {
      ::PeekNamedPipe(h_, buf.data() + from_partial, static_cast<DWORD>(buf.size() - from_partial), &n, nullptr,
                      nullptr);
    }
    r.bytes_read = from_partial + n;
    r.total_available = partial_.size() + total;
    r.left_this_message = type_ == pipe_type::message ? partial_.size() + left : 0;
    return r;
  }

  void flush(deadline dl, std::error_code& ec) noexcept override {
    ec.clear();
    if (!check_open(ec)) return;
    std::lock_guard lk(tx_mu_);
    if (!check_open(ec)) return;
    if (dl.never()) {
      if (!::FlushFileBuffers(h_)) ec = closed_error(::GetLastError());
      return;
    }
    // FlushFileBuffers cannot be overlapped: run it on a helper thread and
    // cancel it when the deadline passes.
    try {
      DWORD err = 0;
      background_flush f;
      f.start(h_, [&err](DWORD e) { err = e; });
      bool finished = f.wait_until(dl);
      f.stop(); // cancels if still running; joins (err is settled then)
      if (!finished) ec = err == 0 ? std::error_code() : make_error_code(errc::timed_out);
      else if (err) ec = closed_error(err);
    } catch (const std::system_error& e) {
      ec = e.code();
    }
  }

  void close() noexcept override {
    abort_io();
    // Every call that uses the handle holds one of these; the cancel above
    // makes them return promptly.
    std::scoped_lock lk(rx_mu_, tx_mu_);
    if (h_ == INVALID_HANDLE_VALUE) return;
    HANDLE h = std::exchange(h_, INVALID_HANDLE_VALUE);
    if (on_close_) std::exchange(on_close_, nullptr)(h); // the server reuses the instance
    else ::CloseHandle(h); // the server sees the end of the pipe
  }

private:
  // Stop the connection without taking the locks (safe from inside a call).
  void abort_io() noexcept {
    if (!open_.exchange(false, std::memory_order_acq_rel)) return;
    ::CancelIoEx(h_, nullptr);                   // wakes readers and writers of this handle
    if (server_side_) ::DisconnectNamedPipe(h_); // the client's calls get ERROR_PIPE_NOT_CONNECTED
  }

  // With tx_mu_ held.
  void break_send_side() noexcept {
    tx_broken_ = true;
    broken_.store(true, std::memory_order_release);
  }

  bool check_open(std::error_code& ec) const {
    if (is_open()) return true;
    ec = make_error_code(errc::not_connected);
    return false;
  }

  std::error_code closed_error(DWORD err) const {
    if (!is_open()) return make_error_code(errc::not_connected, static_cast<int>(err));
    return win32_error(err);
  }

  // Discards the replies of transacts that gave up (pipe_rules::reply_debt),
  // so that what is read next is not one of them. False, with ec, when they
  // have not all arrived by `dl` (progress is kept for the next call).
  bool settle_debt(deadline dl, std::error_code& ec) {
    std::byte sink[4096];
    while (debt_.any()) {
      if (debt_.in_current && !partial_more_) { // all of it was taken already
        partial_.clear();
        debt_.in_current = false;
        continue;
      }
      partial_.clear();
      DWORD n = 0, err = 0;
      auto r = overlapped(h_, rx_event_.get(), dl, [&](OVERLAPPED* ov) {
        return ::ReadFile(h_, sink, sizeof sink, nullptr, ov);
      }, n, err);
      if (r == io_end::timed_out) {
        ec = make_error_code(errc::timed_out);
        return false;
      }
      if (r == io_end::failed) {
        ec = closed_error(err);
        return false;
      }
      if (err == ERROR_MORE_DATA) { // the rest of this reply is still in the pipe
        if (!debt_.in_current) --debt_.owed;
        debt_.in_current = partial_more_ = true;
        continue;
      }
      if (debt_.in_current) debt_.in_current = partial_more_ = false;
      else --debt_.owed;
    }
    return true;
  }

  read_result read_locked(std::span<std::byte> buf, deadline dl, std::error_code& ec) {
    if (!settle_debt(dl, ec)) return {};
    const bool msg = read_mode() == npipe::read_mode::message;
    if (!partial_.empty()) { // the head of a message a receive() could not finish
      std::size_t n = std::min(buf.size(), partial_.size());
      std::memcpy(buf.data(), partial_.data(), n);
      partial_.erase(partial_.begin(), partial_.begin() + static_cast<std::ptrdiff_t>(n));
      // The rest is still here, or still in the pipe: the next read continues it.
      bool more = !partial_.empty() || partial_more_;
      if (partial_.empty()) partial_more_ = false;
      return {n, more};
    }
    DWORD n = 0, err = 0;
    auto r = overlapped(h_, rx_event_.get(), dl, [&](OVERLAPPED* ov) {
      return ::ReadFile(h_, buf.data(), static_cast<DWORD>(std::min<std::size_t>(buf.size(), 0xFFFFFFFFu)), nullptr,
                        ov);
    }, n, err);
    if (r == io_end::timed_out) {
      ec = make_error_code(errc::timed_out);
      return {};
    }
    if (r == io_end::failed) {
      ec = closed_error(err);
      return {};
    }
    // ERROR_MORE_DATA is not a failure: read_result::more_data says so (decisions.md, 23).
    if (err == ERROR_MORE_DATA && msg) return {n, true};
    return {n, false};
  }

  HANDLE h_;
  const HANDLE native_; // h_ as it was handed out (native_handle()), never reset
  bool server_side_;
  pipe_type type_;
  std::atomic<npipe::read_mode> mode_;
  pipe_name name_;
  std::size_t max_message_;
  peer_identity peer_;
  std::function<void(HANDLE)> on_close_;
  std::atomic<bool> open_{true};
  std::atomic<bool> broken_{false}; // the send side is torn (broken())
  std::mutex rx_mu_, tx_mu_;
  event rx_event_, tx_event_;
  std::vector<std::byte> partial_; // message head taken off the pipe by a receive that failed mid-way
  bool partial_more_ = false;      // and the rest of that message is still in the pipe
  pipe_rules::reply_debt debt_;    // replies of transacts that gave up: discarded as they arrive
  bool tx_broken_ = false;
};

} // namespace

std::unique_ptr<connection_impl> make_pipe_end(HANDLE h, bool server_side, pipe_type type, npipe::read_mode mode,
                                               pipe_name name, std::size_t max_message, peer_identity peer,
                                               std::function<void(HANDLE)> on_close) {
  return std::make_unique<win32_connection>(h, server_side, type, mode, std::move(name), max_message, std::move(peer),
                                            std::move(on_close));
}

} // namespace npipe::detail
