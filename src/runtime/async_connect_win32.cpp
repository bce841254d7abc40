// SPDX-License-Identifier: MIT
// Windows async pipe, opening: taking over a server's instance, and a
// client's connect (CreateFileW, WaitNamedPipeW's wait while every instance
// is busy, the deadline).
#include "runtime/async_pipe_win32_parts.hpp"

#include "core/pipe_rules.hpp"
#include "remote/remote.hpp"
#include "transport/win32_util.hpp"

namespace npipe::detail {
using namespace async_win32;

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

void async_pipe::connect(pipe_name name, client_options opts, timeout t, detail::cancellation_slot slot,
                         completion<> done) {
  auto o = connect_op(opts, conn_ != nullptr, std::move(done));
  if (!o) return;
  std::error_code ec;
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
  conn_ = std::make_unique<connecting>(net::any_io_executor(strand_));
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

} // namespace npipe::detail
