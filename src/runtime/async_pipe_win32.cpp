// SPDX-License-Identifier: MIT
// See async_pipe_win32.hpp. Asio first: it includes <winsock2.h> before
// <windows.h>.
#include "runtime/async_pipe.hpp"

#include <asio/bind_executor.hpp>
#include <asio/dispatch.hpp>
#include <asio/post.hpp>
#include <asio/windows/overlapped_ptr.hpp>

#include "core/pipe_rules.hpp"
#include "remote/remote.hpp"
#include "transport/win32_util.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace npipe::detail {
namespace {

constexpr std::size_t first_read = 4096;        // a receive's first read when no message is waiting yet
constexpr std::size_t byte_receive = 64u << 10; // byte read mode: most a receive returns
constexpr std::size_t byte_chunk = 1u << 30;    // byte pipes: largest single WriteFile
constexpr std::size_t max_write = 0xFFFFFFFFu;  // one WriteFile, so one message, at most

std::error_code err(errc e) { return make_error_code(e); }

DWORD win32_code(const std::error_code& ec) {
  if (!ec) return 0;
  if (ec == asio::error::operation_aborted) return ERROR_OPERATION_ABORTED;
  return static_cast<DWORD>(ec.value());
}

bool peer_gone(DWORD e) {
  return e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED || e == ERROR_NO_DATA || e == ERROR_HANDLE_EOF;
}

// Starts one overlapped call on the completion port; `handler(ec, n)` runs
// on `strand` when it completes. Returns its OVERLAPPED (for CancelIoEx), or
// nullptr if it failed at once (the handler still runs, with the error).
template <class Call, class Handler>
OVERLAPPED* start_overlapped(asio::strand<asio::any_io_executor>& strand, Call call, Handler handler) {
  asio::windows::overlapped_ptr ov(strand, asio::bind_executor(strand, std::move(handler)));
  BOOL ok = call(ov.get());
  DWORD e = ::GetLastError();
  // ERROR_MORE_DATA at once still queues a completion (as ERROR_IO_PENDING does).
  if (!ok && e != ERROR_IO_PENDING && e != ERROR_MORE_DATA) {
    ov.complete(std::error_code(static_cast<int>(e), asio::error::get_system_category()), 0);
    return nullptr;
  }
  return ov.release();
}

} // namespace

struct async_pipe::op : async_op {
  std::size_t written = 0; // a send: how much of it the pipe has taken
  bool is_flush = false;
};

struct async_pipe::connecting {
  pipe_name name;
  client_options opts;
  deadline dl;
  std::unique_ptr<op> o;
  std::wstring path;
  bool waited = false;
  std::chrono::milliseconds backoff{1};
  asio::steady_timer timer;
  explicit connecting(const asio::any_io_executor& ex) : timer(ex) {}
};

async_pipe::async_pipe(const asio::any_io_executor& ex) : async_pipe_common(ex), handle_(strand_) {}

std::shared_ptr<async_pipe> async_pipe::create(const asio::any_io_executor& ex) {
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

std::unique_ptr<async_pipe::op> async_pipe::make_op(timeout t, asio::cancellation_slot& slot) {
  auto o = std::make_unique<op>();
  o->id = next_id_++;
  arm(*o, t, slot);
  return o;
}

void async_pipe::arm(op& o, timeout t, asio::cancellation_slot& slot) { arm_op(*this, o, t, slot); }

void async_pipe::finish(op& o, std::error_code ec, const std::string& detail) { finish_op(o, ec, detail); }

// Ends operation `id` with `why`: a deadline (timed_out) or a cancellation
// (operation_aborted). A receiver just leaves the queue: a read in progress
// goes on into held_, so nothing it brings is lost. A send already being
// written cannot be withdrawn without tearing its message: a deadline
// cancels the WriteFile (on_written completes it and breaks the connection
// if part went out); a cancellation lets it finish. A flush in progress is
// cancelled either way.
void async_pipe::end_op(std::uint64_t id, errc why) {
  for (auto it = readers_.begin(); it != readers_.end(); ++it) {
    if ((*it)->id != id) continue;
    auto o = std::move(*it);
    readers_.erase(it);
    // A transact that gives up after its request went out still has its
    // reply coming: it is owed, and discarded when it arrives.
    if (o->transact_reply) debt_.gave_up(false);
    finish(*o, err(why));
    return;
  }
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
  auto rs = std::move(readers_);
  readers_.clear();
  for (auto& o : rs) {
    if (o->transact_reply) debt_.gave_up(false);
    finish(*o, err(errc::operation_aborted));
  }
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

// ------------------------------------------------------------------- opening

void async_pipe::init_open(HANDLE, connection_params p) {
  p_ = std::move(p);
  mode_.store(p_.mode, std::memory_order_relaxed);
  open_.store(true, std::memory_order_release);
  touch();
  kick();
}

bool async_pipe::adopt(std::intptr_t handle, connection_params p, std::error_code& ec) {
  HANDLE h = reinterpret_cast<HANDLE>(handle);
  handle_.assign(h, ec);
  if (ec) {
    ::CloseHandle(h);
    if (p.on_close) p.on_close();
    return false;
  }
  init_open(h, std::move(p));
  return true;
}

void async_pipe::connect(pipe_name name, client_options opts, timeout t, asio::cancellation_slot slot,
                         completion<> done) {
  auto o = std::make_unique<op>();
  o->id = next_id_++;
  o->on_done = std::move(done);
  if (open_ || conn_ || closed_) {
    finish(*o, err(errc::invalid_state), closed_ ? "this connection object was closed; make a new one"
                                                 : "this connection is already open or connecting");
    return;
  }
  std::error_code ec;
  if (!check_client_options(opts, ec)) {
    finish(*o, ec, last_error_detail());
    return;
  }
  if (!name.is_local()) {
    connect_remote(name, opts, deadline::after(t), ec, {}); // says why this build cannot
    finish(*o, ec ? ec : err(errc::not_supported), last_error_detail());
    return;
  }
  if (opts.require_server_uid) {
    finish(*o, err(errc::not_supported),
           "require_server_uid names a POSIX uid; on Windows the pipe's DACL protects the name");
    return;
  }
  conn_ = std::make_unique<connecting>(asio::any_io_executor(strand_));
  conn_->name = std::move(name);
  conn_->opts = std::move(opts);
  conn_->dl = deadline::after(t);
  conn_->path = wide_path(conn_->name);
  arm(*o, forever, slot);
  conn_->o = std::move(o);
  connect_attempt();
}

// CreateFile; a busy pipe is tried again on a timer until an instance frees
// or the deadline passes (WaitNamedPipe would hold a thread: it has no
// overlapped form). The retries back off from 1 to 16 ms.
void async_pipe::connect_attempt() {
  auto& c = *conn_;
  client_handle ch;
  DWORD e = 0;
  std::error_code ec;
  auto st = open_client(c.path, c.name, c.opts, ch, e, ec);
  if (st == open_status::failed) {
    fail_connect(ec, last_error_detail());
    return;
  }
  if (st == open_status::opened) {
    std::error_code aec;
    handle_.assign(ch.h, aec);
    if (aec) {
      ::CloseHandle(ch.h);
      fail_connect(aec, "cannot attach the pipe to the I/O completion port: " + aec.message());
      return;
    }
    connection_params p;
    p.name = c.name;
    p.type = ch.type;
    p.mode = ch.mode;
    p.max_message = c.opts.max_message_size;
    p.peer_max_message = SIZE_MAX;
    p.peer = std::move(ch.server);
    auto cn = std::move(conn_);
    cn->timer.cancel();
    init_open(ch.h, std::move(p));
    finish(*cn->o, {});
    return;
  }
  if (st == open_status::missing && !c.waited) {
    fail_connect(win32_error(e), "no server is listening on " + c.name.str());
    return;
  }
  // Busy, or between instances after being busy.
  if (c.dl.passed()) {
    if (c.waited) fail_connect(err(errc::timed_out), "no instance of " + c.name.str() + " became free in time");
    else fail_connect(make_error_code(errc::pipe_busy, static_cast<int>(e)),
                      "all instances of " + c.name.str() + " are busy");
    return;
  }
  c.waited = true;
  auto at = clock::now() + c.backoff;
  if (!c.dl.never()) at = std::min(at, c.dl.at);
  c.backoff = std::min(c.backoff * 2, std::chrono::milliseconds(16));
  c.timer.expires_at(at);
  c.timer.async_wait([w = weak_from_this()](const std::error_code& tec) {
    if (tec) return;
    if (auto self = w.lock(); self && self->conn_) self->connect_attempt();
  });
}

void async_pipe::fail_connect(std::error_code ec, std::string detail) {
  auto c = std::move(conn_);
  if (!c) return;
  c->timer.cancel();
  finish(*c->o, ec, detail);
}

// ----------------------------------------------------------------- receiving

void async_pipe::kick() {
  if (in_kick_) {
    kick_again_ = true;
    return;
  }
  in_kick_ = true;
  do {
    kick_again_ = false;
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
  } while (kick_again_);
  in_kick_ = false;
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

void async_pipe::receive(timeout t, asio::cancellation_slot slot, completion<std::vector<std::byte>> done) {
  auto o = make_op(t, slot);
  o->on_msg = std::move(done);
  readers_.push_back(std::move(o));
  kick();
}

void async_pipe::read_some(asio::mutable_buffer buf, timeout t, asio::cancellation_slot slot,
                           completion<read_result> done) {
  auto o = make_op(t, slot);
  o->on_some = std::move(done);
  o->buf = buf;
  readers_.push_back(std::move(o));
  kick();
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
        asio::post(s, [w, e, gen] {
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

void async_pipe::send(asio::const_buffer msg, std::vector<std::byte> owned, timeout t, asio::cancellation_slot slot,
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
  o->payload = o->owned.empty() ? msg : asio::buffer(o->owned);
  queue_write(std::move(o));
}

void async_pipe::transact(std::vector<std::byte> request, timeout t, asio::cancellation_slot slot,
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
  o->payload = asio::buffer(o->owned);
  queue_write(std::move(o));
}

void async_pipe::flush(timeout t, asio::cancellation_slot slot, completion<> done) {
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
