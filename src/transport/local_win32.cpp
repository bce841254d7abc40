// SPDX-License-Identifier: MIT
// Windows local pipes, the server side, over genuine Win32 named pipes:
// win32_server (instances, the listener and its DACL, waiting clients, the
// admission thread that fills its admission_queue) and open_local_server. Every call is
// overlapped, so deadlines and close() from another thread work (no thread
// is left blocked in ConnectNamedPipe or ReadFile). The client's open is
// client_win32.cpp, the names and listing list_win32.cpp, the pipe end
// itself pipe_end_win32.cpp. See docs/semantics.md.

#include "core/pipe_rules.hpp"
#include "transport/admission_queue.hpp"
#include "transport/win32_util.hpp"

#include <sddl.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

namespace npipe::detail {

namespace {

// ----------------------------------------------------------------- server

class win32_server final : public server_impl, public std::enable_shared_from_this<win32_server> {
public:
  win32_server(pipe_name name, server_options opts, std::function<void()> wake)
      : name_(std::move(name)), opts_(std::move(opts)), clients_(std::move(wake)) {}
  ~win32_server() override { close(); }

  bool open(std::error_code& ec) {
    if (!check_server_options(opts_, ec)) return false;
    if (opts_.accept_remote) {
      set_error_detail("remote clients (npipe's TLS gateway) are Linux-only for now; Windows pipes keep "
                       "PIPE_REJECT_REMOTE_CLIENTS");
      ec = make_error_code(errc::not_supported);
      return false;
    }
    if (opts_.max_per_user) {
      set_error_detail("max_per_user needs npipe's handshake to tell one user \"busy\"; Win32 pipes have none: "
                       "limit the clients with max_instances (or max_connections)");
      ec = make_error_code(errc::not_supported);
      return false;
    }
    // An explicit DACL, never the default one: SYSTEM and this user, plus
    // (everyone) authenticated users. Group and list policies name Linux ids.
    std::string user = current_user_sid();
    if (user.empty()) {
      set_error_detail("cannot read this process's user SID to build the pipe's security descriptor");
      ec = win32_error(::GetLastError());
      return false;
    }
    std::string sddl = "D:P(A;;GA;;;SY)(A;;GA;;;" + user + ")";
    switch (opts_.access.who) {
    case access_policy::kind::current_user: break;
    case access_policy::kind::everyone: sddl += "(A;;GRGW;;;AU)"; break;
    case access_policy::kind::group:
    case access_policy::kind::list:
      set_error_detail("group and list access policies name POSIX ids; on Windows use current_user or everyone");
      ec = make_error_code(errc::not_supported);
      return false;
    }
    if (!::ConvertStringSecurityDescriptorToSecurityDescriptorW(widen(sddl).c_str(), SDDL_REVISION_1, &sd_, nullptr)) {
      ec = win32_error(::GetLastError());
      return false;
    }
    path_ = wide_path(name_);
    HANDLE h = create_instance(true, ec);
    if (h == INVALID_HANDLE_VALUE) return false;
    {
      std::lock_guard lk(mu_);
      listening_ = h;
    }
    try {
      admission_ = std::thread([this] { admit(); });
    } catch (const std::system_error& e) {
      close();
      ec = e.code();
      set_error_detail("cannot start the server's admission thread");
      return false;
    }
    return true;
  }

  std::unique_ptr<connection_impl> accept(deadline dl, std::error_code& ec) override {
    auto a = clients_.pop(dl, ec);
    if (!a) return nullptr;
    // The connection gives the instance back when it closes (release): the
    // server listens on it again for the next client, as Win32 servers do.
    auto c = make_pipe_end(reinterpret_cast<HANDLE>(a.handle), true, a.params.type, a.params.mode, name_,
                           a.params.max_message, a.params.peer, [w = weak_from_this()](HANDLE done) {
                             if (auto s = w.lock()) s->release(done);
                             else ::CloseHandle(done);
                           });
    a.release();
    a.params.on_close = nullptr; // release() frees the instance
    return c;
  }

  void close() noexcept override {
    HANDLE h;
    {
      std::lock_guard lk(mu_);
      if (closed_) return;
      closed_ = true;
      h = std::exchange(listening_, INVALID_HANDLE_VALUE);
      cv_.notify_all();
    }
    clients_.close(); // accept() returns; the unaccepted clients are dropped
    if (h != INVALID_HANDLE_VALUE) {
      // Wake the admission thread and wait until it lets go of the
      // instance. Cancel again while waiting: a cancel that lands just
      // before its ConnectNamedPipe starts would otherwise be lost.
      std::unique_lock serial(accept_mu_, std::defer_lock);
      do ::CancelIoEx(h, nullptr);
      while (!serial.try_lock_for(std::chrono::milliseconds(5)));
      ::CloseHandle(h);
    }
    if (admission_.joinable() && admission_.get_id() != std::this_thread::get_id()) admission_.join();
    if (sd_) {
      ::LocalFree(sd_);
      sd_ = nullptr;
    }
  }

  bool is_open() const noexcept override {
    std::lock_guard lk(mu_);
    return !closed_;
  }
  std::string native_path() const override { return "\\\\.\\pipe\\" + name_.name(); }

  std::intptr_t native_handle(std::error_code& ec) const noexcept override { return clients_.native_handle(ec); }
  admission_queue& clients() noexcept override { return clients_; }
  unsigned active_instances() const noexcept override {
    std::lock_guard lk(mu_);
    return active_;
  }

private:
  npipe::read_mode mode() const noexcept {
    return pipe_rules::initial_read_mode(opts_.type, opts_.read_mode);
  }

  // On the admission thread: waits for a client on the listening instance
  // (ConnectNamedPipe, overlapped, so close() cancels it) and makes the
  // next instance. The caller owns the connected handle.
  HANDLE accept_handle(peer_identity& peer, std::error_code& ec) {
    std::lock_guard serial(accept_mu_); // close() waits for it to let go of the instance
    HANDLE h;
    {
      // Every instance may be taken: listen again as soon as one frees (a
      // released instance, or room for a new one).
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return closed_ || listening_ != INVALID_HANDLE_VALUE || active_ < instance_cap(); });
      if (closed_) {
        ec = make_error_code(errc::operation_aborted);
        return INVALID_HANDLE_VALUE;
      }
      h = listening_;
    }
    if (h == INVALID_HANDLE_VALUE) {
      h = create_instance(false, ec);
      if (h == INVALID_HANDLE_VALUE) return h;
      std::lock_guard lk(mu_);
      if (closed_) {
        ::CloseHandle(h);
        ec = make_error_code(errc::operation_aborted);
        return INVALID_HANDLE_VALUE;
      }
      listening_ = h;
    }
    DWORD n = 0, err = 0;
    auto r = overlapped(h, accept_event_.get(), deadline{}, [&](OVERLAPPED* ov) { return ::ConnectNamedPipe(h, ov); },
                        n, err);
    if (r != io_end::done && err != ERROR_PIPE_CONNECTED) {
      std::lock_guard lk(mu_);
      ec = closed_ ? make_error_code(errc::operation_aborted) : win32_error(err);
      if (!closed_ && err == ERROR_NO_DATA) ::DisconnectNamedPipe(h); // a client came and went: listen again
      return INVALID_HANDLE_VALUE;
    }
    // Connected: this instance becomes the connection; make the next one
    // now, so the name never disappears and the next client can connect.
    std::error_code cec;
    bool room;
    {
      std::lock_guard lk(mu_);
      room = active_ + 1 < instance_cap();
    }
    HANDLE next = room ? create_instance(false, cec) : INVALID_HANDLE_VALUE;
    {
      std::lock_guard lk(mu_);
      if (closed_) {
        if (next != INVALID_HANDLE_VALUE) ::CloseHandle(next);
        ::DisconnectNamedPipe(h);
        ec = make_error_code(errc::operation_aborted);
        return INVALID_HANDLE_VALUE;
      }
      listening_ = next;
      ++active_;
    }
    peer = client_of(h);
    return h;
  }

  // The admission thread: every connected instance joins clients_, whose
  // taker owns it; closing it frees the instance (instance_gone, or
  // release() for a blocking connection, which listens on it again).
  void admit() {
    DWORD backoff = 0;
    for (;;) {
      peer_identity peer;
      std::error_code ec;
      HANDLE h = accept_handle(peer, ec); // close() cancels it
      if (h == INVALID_HANDLE_VALUE) {
        if (!is_open()) return;
        if (static_cast<DWORD>(os_error(ec)) != ERROR_NO_DATA) { // not a client that came and went: accept() hears of it
          std::string why = last_error_detail();
          clients_.report(ec, why.empty() ? "the server cannot take a client: making or listening on a pipe "
                                            "instance failed (" + ec.message() + "); it keeps trying"
                                          : why);
          backoff = std::clamp<DWORD>(backoff * 2, 10, 1000); // a lasting failure does not spin
          ::Sleep(backoff);
        }
        continue;
      }
      backoff = 0;
      connection_params p;
      p.name = name_;
      p.type = opts_.type;
      p.mode = mode();
      p.max_message = opts_.max_message_size;
      p.peer_max_message = SIZE_MAX;
      p.peer = std::move(peer);
      p.on_close = [w = weak_from_this()] {
        if (auto s = w.lock()) s->instance_gone();
      };
      try {
        clients_.push(admitted_client(reinterpret_cast<std::intptr_t>(h), std::move(p)));
      } catch (...) {
        // Out of memory (the client, dropped, freed its instance): the next one may fit.
      }
    }
  }

  // An admitted instance was closed by its owner.
  void instance_gone() {
    std::lock_guard lk(mu_);
    if (active_ > 0) --active_;
    cv_.notify_all();
  }

  unsigned instance_cap() const noexcept { return pipe_rules::instance_cap(opts_); }

  HANDLE create_instance(bool first, std::error_code& ec) {
    SECURITY_ATTRIBUTES sa{sizeof sa, sd_, FALSE};
    DWORD open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (first ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0);
    DWORD mode = (opts_.type == pipe_type::message ? PIPE_TYPE_MESSAGE : PIPE_TYPE_BYTE) |
                 (pipe_rules::initial_read_mode(opts_.type, opts_.read_mode) ==
                          read_mode::message
                      ? PIPE_READMODE_MESSAGE
                      : PIPE_READMODE_BYTE) |
                 PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS;
    DWORD instances = opts_.max_instances >= unlimited_instances ? PIPE_UNLIMITED_INSTANCES : opts_.max_instances;
    auto size = [](std::size_t s) { return static_cast<DWORD>(std::min<std::size_t>(s ? s : 64u << 10, 1u << 30)); };
    HANDLE h = ::CreateNamedPipeW(path_.c_str(), open_mode, mode, instances, size(opts_.out_buffer_size),
                                  size(opts_.in_buffer_size), 0, &sa);
    if (h == INVALID_HANDLE_VALUE) {
      DWORD e = ::GetLastError();
      if (first && (e == ERROR_ACCESS_DENIED || e == ERROR_PIPE_BUSY)) {
        set_error_detail("pipe " + name_.str() + " is in use by a live server");
        ec = make_error_code(errc::name_in_use, static_cast<int>(e));
      } else {
        ec = win32_error(e);
      }
    }
    return h;
  }

  // A connection ended: its disconnected instance listens again if the
  // server has none listening (so the name never disappears, and a waiting
  // client is admitted at once); otherwise it is closed.
  void release(HANDLE done) {
    {
      std::lock_guard lk(mu_);
      if (active_ > 0) --active_;
      if (!closed_ && listening_ == INVALID_HANDLE_VALUE) {
        listening_ = done;
        cv_.notify_all();
        return;
      }
    }
    ::CloseHandle(done);
  }

  pipe_name name_;
  server_options opts_;
  std::wstring path_;
  PSECURITY_DESCRIPTOR sd_ = nullptr;
  std::timed_mutex accept_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  HANDLE listening_ = INVALID_HANDLE_VALUE;
  unsigned active_ = 0;
  bool closed_ = false;
  event accept_event_;
  admission_queue clients_;
  std::thread admission_;
};

} // namespace


// Windows has no listening socket to wait on: every instance's connect is
// an overlapped call on the admission thread, so caller_accepts changes nothing.
std::shared_ptr<server_impl> open_local_server(const pipe_name& name, const server_options& opts,
                                               std::error_code& ec, std::function<void()> wake, bool) {
  auto s = std::make_shared<win32_server>(name, opts, std::move(wake));
  if (!s->open(ec)) return nullptr;
  return s;
}

} // namespace npipe::detail
