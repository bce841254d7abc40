// SPDX-License-Identifier: MIT
// Windows local pipes: genuine Win32 named pipes. Every call is overlapped,
// so deadlines and close() from another thread work (no thread is left
// blocked in ConnectNamedPipe or ReadFile). See docs/semantics.md.

#include "core/pipe_rules.hpp"
#include "transport/win32_util.hpp"

#include <sddl.h>

#include <npipe/local_path.hpp>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

namespace npipe {

std::string pipe_directory(std::string_view) { return "\\\\.\\pipe"; }

std::string local_path(const pipe_name& name, std::error_code& ec, std::string_view) {
  ec.clear();
  return "\\\\.\\pipe\\" + name.name();
}

namespace detail {
std::string narrow_name(const wchar_t* w);
}

std::vector<local_pipe_info> list_local_pipes(std::error_code& ec, std::string_view) {
  ec.clear();
  std::vector<local_pipe_info> out;
  WIN32_FIND_DATAW fd;
  HANDLE f = ::FindFirstFileW(L"\\\\.\\pipe\\*", &fd); // every pipe on this machine, npipe's or not
  if (f == INVALID_HANDLE_VALUE) return out;
  do {
    local_pipe_info info;
    info.file = detail::narrow_name(fd.cFileName);
    info.path = "\\\\.\\pipe\\" + info.file;
    info.live = true; // a pipe name exists only while its server does
    info.state = local_pipe_state::live;
    out.push_back(std::move(info));
  } while (::FindNextFileW(f, &fd));
  ::FindClose(f);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.file < b.file; });
  return out;
}

} // namespace npipe

namespace npipe::detail {

std::wstring widen(const std::string& s) {
  if (s.empty()) return {};
  int n = ::MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), nullptr, 0);
  std::wstring w(static_cast<std::size_t>(n), L'\0');
  ::MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), w.data(), n);
  return w;
}

std::string narrow(const wchar_t* w) {
  int n = ::WideCharToMultiByte(CP_UTF8, 0, w, -1, nullptr, 0, nullptr, nullptr);
  if (n <= 1) return {};
  std::string s(static_cast<std::size_t>(n - 1), '\0');
  ::WideCharToMultiByte(CP_UTF8, 0, w, -1, s.data(), n, nullptr, nullptr);
  return s;
}

std::string narrow_name(const wchar_t* w) { return narrow(w); }

std::wstring wide_path(const pipe_name& name) { return widen("\\\\.\\pipe\\" + name.name()); }

std::error_code win32_error(DWORD e) {
  int os = static_cast<int>(e);
  switch (e) {
  case ERROR_FILE_NOT_FOUND:
  case ERROR_PATH_NOT_FOUND: return make_error_code(errc::not_found, os);
  case ERROR_PIPE_BUSY: return make_error_code(errc::pipe_busy, os);
  case ERROR_MORE_DATA: return make_error_code(errc::more_data, os);
  case ERROR_SEM_TIMEOUT: return make_error_code(errc::timed_out, os);
  case ERROR_BROKEN_PIPE:
  case ERROR_PIPE_NOT_CONNECTED:
  case ERROR_NO_DATA: return make_error_code(errc::broken_pipe, os);
  case ERROR_ACCESS_DENIED: return make_error_code(errc::access_denied, os);
  case ERROR_INVALID_NAME:
  case ERROR_BAD_PATHNAME:
  case ERROR_FILENAME_EXCED_RANGE: return make_error_code(errc::invalid_name, os);
  case ERROR_OPERATION_ABORTED: return make_error_code(errc::operation_aborted, os);
  case ERROR_INVALID_PARAMETER: return make_error_code(errc::invalid_argument, os);
  default: return make_error_code(errc::system_error, os);
  }
}

DWORD wait_ms(deadline dl) {
  if (dl.never()) return INFINITE;
  auto left = dl.remaining().count();
  return static_cast<DWORD>(std::clamp<long long>(left, 0, INFINITE - 1));
}

void close_native_handle(std::intptr_t h) noexcept { ::CloseHandle(reinterpret_cast<HANDLE>(h)); }

namespace {

// A manual-reset event owned by one direction of one handle.
class event {
public:
  event() : h_(::CreateEventW(nullptr, TRUE, FALSE, nullptr)) {}
  ~event() {
    if (h_) ::CloseHandle(h_);
  }
  event(const event&) = delete;
  event& operator=(const event&) = delete;
  HANDLE get() const noexcept { return h_; }

private:
  HANDLE h_;
};

enum class io_end { done, timed_out, failed };

// Runs one overlapped call on `h`: `start(ov)` issues it. Waits until it
// completes or the deadline passes (then cancels it and reports what it did
// anyway). `n` gets the bytes moved; `err` the Win32 error (ERROR_MORE_DATA
// counts as done).
template <class Start>
io_end overlapped(HANDLE h, HANDLE ev, deadline dl, Start start, DWORD& n, DWORD& err) {
  OVERLAPPED ov{};
  ov.hEvent = ev;
  ::ResetEvent(ev);
  n = 0;
  err = 0;
  if (!start(&ov)) {
    err = ::GetLastError();
    if (err != ERROR_IO_PENDING) {
      if (err == ERROR_MORE_DATA) {
        ::GetOverlappedResult(h, &ov, &n, FALSE);
        return io_end::done;
      }
      return io_end::failed;
    }
    if (::WaitForSingleObject(ev, wait_ms(dl)) == WAIT_TIMEOUT) {
      ::CancelIoEx(h, &ov);
      if (::GetOverlappedResult(h, &ov, &n, TRUE)) { // it finished just in time
        err = 0;
        return io_end::done;
      }
      err = ::GetLastError();
      if (err == ERROR_OPERATION_ABORTED) return io_end::timed_out;
      return err == ERROR_MORE_DATA ? io_end::done : io_end::failed;
    }
  }
  if (::GetOverlappedResult(h, &ov, &n, FALSE)) {
    err = 0;
    return io_end::done;
  }
  err = ::GetLastError();
  return err == ERROR_MORE_DATA ? io_end::done : io_end::failed;
}

// The user of an access token: its SID as a string ("S-1-5-21-...") and,
// when asked, its account name (without the domain, as GetUserNameW says it).
std::string token_sid(HANDLE tok, std::string* account = nullptr) {
  DWORD len = 0;
  ::GetTokenInformation(tok, TokenUser, nullptr, 0, &len);
  if (len == 0) return {};
  std::vector<BYTE> buf(len);
  if (!::GetTokenInformation(tok, TokenUser, buf.data(), len, &len)) return {};
  PSID user = reinterpret_cast<TOKEN_USER*>(buf.data())->User.Sid;
  std::string sid;
  LPWSTR s = nullptr;
  if (::ConvertSidToStringSidW(user, &s)) {
    sid = narrow(s);
    ::LocalFree(s);
  }
  if (account) {
    wchar_t name[256], domain[256];
    DWORD name_len = 256, domain_len = 256;
    SID_NAME_USE use;
    if (::LookupAccountSidW(nullptr, user, name, &name_len, domain, &domain_len, &use)) *account = narrow(name);
  }
  return sid;
}

std::string current_user_sid() {
  HANDLE tok = nullptr;
  if (!::OpenProcessToken(::GetCurrentProcess(), TOKEN_QUERY, &tok)) return {};
  std::string sid = token_sid(tok);
  ::CloseHandle(tok);
  return sid;
}

// ------------------------------------------------------------ connection

class win32_connection final : public connection_impl {
public:
  /// `on_close`, if set, takes over the (disconnected) handle: a server
  /// reuses its instance for the next client, as Win32 servers do.
  win32_connection(HANDLE h, bool server_side, pipe_type type, npipe::read_mode mode, pipe_name name,
                   std::size_t max_message, peer_identity peer, std::function<void(HANDLE)> on_close)
      : h_(h), server_side_(server_side), type_(type), mode_(mode), name_(std::move(name)),
        max_message_(max_message), peer_(std::move(peer)), on_close_(std::move(on_close)) {}
  ~win32_connection() override { close(); }

  bool is_open() const noexcept override { return open_.load(std::memory_order_acquire); }
  bool broken() const noexcept override { return broken_.load(std::memory_order_acquire); }
  pipe_type type() const noexcept override { return type_; }
  npipe::read_mode read_mode() const noexcept override { return mode_.load(std::memory_order_relaxed); }
  const peer_identity& peer() const noexcept override { return peer_; }
  const pipe_name& name() const noexcept override { return name_; }
  std::size_t peer_max_message_size() const noexcept override { return SIZE_MAX; }

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

  // receive() with rx_mu_ held.
  std::vector<std::byte> receive_locked(deadline dl, std::error_code& ec) {
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

// ----------------------------------------------------------------- server

class win32_server final : public server_impl, public std::enable_shared_from_this<win32_server> {
public:
  win32_server(pipe_name name, server_options opts, admission_sink sink)
      : name_(std::move(name)), opts_(std::move(opts)), sink_(std::move(sink)) {}
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
    if (sink_) {
      try {
        admission_ = std::thread([this] { admit(); });
      } catch (const std::system_error& e) {
        close();
        ec = e.code();
        return false;
      }
    }
    return true;
  }

  std::unique_ptr<connection_impl> accept(deadline dl, std::error_code& ec) override {
    if (sink_) {
      set_error_detail("this server hands its clients to the async runtime");
      ec = make_error_code(errc::invalid_state);
      return nullptr;
    }
    peer_identity peer;
    HANDLE h = accept_handle(dl, peer, ec);
    if (h == INVALID_HANDLE_VALUE) return nullptr;
    // The connection takes the instance back when it closes: the server
    // reuses it for the next client, as Win32 servers do.
    return std::make_unique<win32_connection>(h, true, opts_.type, mode(), name_, opts_.max_message_size,
                                              std::move(peer), [w = weak_from_this()](HANDLE done) {
                                                if (auto s = w.lock()) s->release(done);
                                                else ::CloseHandle(done);
                                              });
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
    if (h != INVALID_HANDLE_VALUE) {
      // Wake accept() (or the admission thread) and wait until it lets go of
      // the instance. Cancel again while waiting: a cancel that lands just
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
  unsigned active_instances() const noexcept override {
    std::lock_guard lk(mu_);
    return active_;
  }

private:
  npipe::read_mode mode() const noexcept {
    return pipe_rules::initial_read_mode(opts_.type, opts_.read_mode);
  }

  // Waits for a client on the listening instance (ConnectNamedPipe,
  // overlapped, within `dl`) and makes the next instance. The caller owns
  // the connected handle.
  HANDLE accept_handle(deadline dl, peer_identity& peer, std::error_code& ec) {
    std::unique_lock serial(accept_mu_, std::defer_lock);
    if (!lock_until(serial, dl)) {
      ec = make_error_code(errc::timed_out);
      return INVALID_HANDLE_VALUE;
    }
    HANDLE h;
    {
      // Every instance may be taken: listen again as soon as one frees (a
      // released instance, or room for a new one).
      std::unique_lock lk(mu_);
      auto ready = [&] { return closed_ || listening_ != INVALID_HANDLE_VALUE || active_ < instance_cap(); };
      if (dl.never()) cv_.wait(lk, ready);
      else if (!cv_.wait_until(lk, dl.at, ready)) {
        ec = make_error_code(errc::timed_out);
        return INVALID_HANDLE_VALUE;
      }
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
    auto r = overlapped(h, accept_event_.get(), dl, [&](OVERLAPPED* ov) { return ::ConnectNamedPipe(h, ov); }, n,
                        err);
    if (r == io_end::failed && err != ERROR_PIPE_CONNECTED) {
      std::lock_guard lk(mu_);
      ec = closed_ ? make_error_code(errc::operation_aborted) : win32_error(err);
      if (!closed_ && err == ERROR_NO_DATA) ::DisconnectNamedPipe(h); // a client came and went: listen again
      return INVALID_HANDLE_VALUE;
    }
    if (r == io_end::timed_out) {
      std::lock_guard lk(mu_);
      ec = make_error_code(closed_ ? errc::operation_aborted : errc::timed_out);
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

  // The async runtime's admission thread: every connected instance goes to
  // the sink, which owns it; closing it frees the instance (instance_gone).
  void admit() {
    for (;;) {
      peer_identity peer;
      std::error_code ec;
      HANDLE h = accept_handle(deadline{}, peer, ec); // close() cancels it
      if (h == INVALID_HANDLE_VALUE) {
        if (!is_open()) return;
        ::Sleep(10); // a client came and went, or no instance could be made: listen again
        continue;
      }
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
        sink_(admitted_client{reinterpret_cast<std::intptr_t>(h), std::move(p)});
      } catch (...) {
        ::CloseHandle(h); // out of memory: this client is refused, the next one may fit
        instance_gone();
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

  static bool lock_until(std::unique_lock<std::timed_mutex>& lk, deadline dl) {
    if (dl.never()) {
      lk.lock();
      return true;
    }
    return lk.try_lock_until(dl.at);
  }

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
  admission_sink sink_;
  std::thread admission_;
};

} // namespace

std::shared_ptr<server_impl> open_local_server(const pipe_name& name, const server_options& opts,
                                               std::error_code& ec, admission_sink sink) {
  auto s = std::make_shared<win32_server>(name, opts, std::move(sink));
  if (!s->open(ec)) return nullptr;
  return s;
}

peer_identity client_of(HANDLE h) {
  peer_identity p;
  ULONG pid = 0;
  if (::GetNamedPipeClientProcessId(h, &pid)) p.pid = static_cast<std::int64_t>(pid);
  // The client's user as the pipe itself carries it (the client opened with
  // SECURITY_IDENTIFICATION): impersonate it, read the thread's token (as
  // ourselves: an identification token allows queries only), revert. Not
  // the process token found by pid: opening another user's process needs
  // rights a server seldom has, and a pid can be reused once its client has
  // gone. A client that opened anonymously leaves both empty. Works the
  // same under Wine.
  if (::ImpersonateNamedPipeClient(h)) {
    wchar_t name[256];
    DWORD len = 256;
    if (::GetUserNameW(name, &len)) p.user = narrow(name);
    HANDLE tok = nullptr;
    if (::OpenThreadToken(::GetCurrentThread(), TOKEN_QUERY, TRUE, &tok)) {
      p.sid = token_sid(tok);
      ::CloseHandle(tok);
    }
    ::RevertToSelf();
  }
  return p;
}

peer_identity server_of(HANDLE h) {
  peer_identity p;
  ULONG pid = 0;
  if (!::GetNamedPipeServerProcessId(h, &pid)) return p;
  p.pid = static_cast<std::int64_t>(pid);
  // A client cannot impersonate its server: read the server process's token
  // (the process lives while it holds the pipe, so the pid is its own). This
  // works when the server runs as the same user, or we are an administrator.
  if (HANDLE proc = ::OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid)) {
    HANDLE tok = nullptr;
    if (::OpenProcessToken(proc, TOKEN_QUERY, &tok)) {
      p.sid = token_sid(tok, &p.user);
      ::CloseHandle(tok);
    }
    ::CloseHandle(proc);
  }
  return p;
}

open_status open_client(const std::wstring& path, const pipe_name& name, const client_options& opts,
                        client_handle& out, DWORD& err, std::error_code& ec) {
  ec.clear();
  err = 0;
  HANDLE h = ::CreateFileW(path.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, OPEN_EXISTING,
                           FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, nullptr);
  if (h == INVALID_HANDLE_VALUE) {
    err = ::GetLastError();
    if (err == ERROR_PIPE_BUSY) return open_status::busy;
    if (err == ERROR_FILE_NOT_FOUND) return open_status::missing;
    ec = win32_error(err);
    return open_status::failed;
  }
  // The server may disconnect the instance the moment it is connected: then
  // the client is connected to a closed pipe, as on Linux, and its first
  // call says broken_pipe (the calls below fail with ERROR_PIPE_NOT_CONNECTED).
  auto gone = [](DWORD e) { return e == ERROR_PIPE_NOT_CONNECTED || e == ERROR_BROKEN_PIPE || e == ERROR_NO_DATA; };
  DWORD flags = 0;
  bool known = ::GetNamedPipeInfo(h, &flags, nullptr, nullptr, nullptr);
  if (!known && !gone(::GetLastError())) {
    err = ::GetLastError();
    ec = win32_error(err);
    ::CloseHandle(h);
    return open_status::failed;
  }
  pipe_type type = !known || (flags & PIPE_TYPE_MESSAGE) ? pipe_type::message : pipe_type::byte;
  read_mode mode = pipe_rules::initial_read_mode(type, opts.read_mode);
  if (!pipe_rules::read_mode_allowed(type, mode)) {
    ::CloseHandle(h);
    set_error_detail("message read mode needs a message pipe; " + name.str() + " is a byte pipe");
    ec = make_error_code(errc::invalid_argument);
    return open_status::failed;
  }
  DWORD m = mode == read_mode::message ? PIPE_READMODE_MESSAGE : PIPE_READMODE_BYTE;
  if (known && !::SetNamedPipeHandleState(h, &m, nullptr, nullptr) && !gone(::GetLastError())) {
    err = ::GetLastError();
    ec = win32_error(err);
    ::CloseHandle(h);
    return open_status::failed;
  }
  out = client_handle{h, type, mode, server_of(h)};
  return open_status::opened;
}

std::unique_ptr<connection_impl> connect_local(const pipe_name& name, const client_options& opts, deadline dl,
                                               std::error_code& ec, std::span<const std::byte> first) {
  if (opts.require_server_uid) {
    set_error_detail("require_server_uid names a POSIX uid; on Windows the pipe's DACL protects the name");
    ec = make_error_code(errc::not_supported);
    return nullptr;
  }
  std::wstring path = wide_path(name);
  client_handle c;
  bool waited = false;
  for (;;) {
    DWORD e = 0;
    auto st = open_client(path, name, opts, c, e, ec);
    if (st == open_status::opened) break;
    if (st == open_status::failed) return nullptr;
    if (st == open_status::missing) {
      if (waited && !dl.passed()) { // it was there: between instances
        ::Sleep(std::min<DWORD>(10, wait_ms(dl)));
        continue;
      }
      set_error_detail("no server is listening on " + name.str());
      ec = win32_error(e);
      return nullptr;
    }
    // Busy: WaitNamedPipe, within the caller's deadline.
    DWORD ms = wait_ms(dl);
    if (ms == 0) {
      set_error_detail(waited ? "no instance of " + name.str() + " became free in time"
                              : "all instances of " + name.str() + " are busy");
      ec = make_error_code(waited ? errc::timed_out : errc::pipe_busy, static_cast<int>(e));
      return nullptr;
    }
    waited = true;
    if (!::WaitNamedPipeW(path.c_str(), ms == INFINITE ? NMPWAIT_WAIT_FOREVER : ms)) {
      DWORD we = ::GetLastError();
      if (we == ERROR_SEM_TIMEOUT || dl.passed()) {
        set_error_detail("no instance of " + name.str() + " became free in time");
        ec = make_error_code(errc::timed_out, static_cast<int>(we));
        return nullptr;
      }
      if (we == ERROR_ACCESS_DENIED) {
        ec = win32_error(we);
        return nullptr;
      }
      // The server is between instances: try again shortly, within the deadline.
      ::Sleep(std::min<DWORD>(10, wait_ms(dl)));
    }
  }
  auto conn = std::make_unique<win32_connection>(c.h, false, c.type, c.mode, name, opts.max_message_size,
                                                 std::move(c.server), nullptr);
  if (!first.empty()) {
    conn->write(first, dl, ec);
    if (ec) return nullptr;
  }
  return conn;
}

// ------------------------------------------------------- background_flush

void background_flush::start(HANDLE h, std::function<void(DWORD)> done) {
  stop();
  st_ = std::make_shared<shared>();
  t_ = std::thread([st = st_, h, done = std::move(done)] {
    {
      std::lock_guard lk(st->mu);
      ::DuplicateHandle(::GetCurrentProcess(), ::GetCurrentThread(), ::GetCurrentProcess(), &st->thread, 0, FALSE,
                        DUPLICATE_SAME_ACCESS);
      st->started = true;
    }
    BOOL ok = ::FlushFileBuffers(h);
    DWORD err = ok ? 0 : ::GetLastError();
    done(err);
    std::lock_guard lk(st->mu);
    st->err = err;
    st->done = true;
    st->cv.notify_all();
  });
}

bool background_flush::finished() const {
  if (!st_) return true;
  std::lock_guard lk(st_->mu);
  return st_->done;
}

DWORD background_flush::error() const {
  if (!st_) return 0;
  std::lock_guard lk(st_->mu);
  return st_->err;
}

bool background_flush::wait_until(deadline dl) {
  if (!st_) return true;
  std::unique_lock lk(st_->mu);
  if (dl.never()) {
    st_->cv.wait(lk, [&] { return st_->done; });
    return true;
  }
  return st_->cv.wait_until(lk, dl.at, [&] { return st_->done; });
}

void background_flush::stop() noexcept {
  if (!st_) return;
  {
    // Cancel until the flush gives up (it may not have started waiting yet).
    std::unique_lock lk(st_->mu);
    while (!st_->done) {
      if (st_->started && st_->thread) ::CancelSynchronousIo(st_->thread);
      st_->cv.wait_for(lk, std::chrono::milliseconds(10));
    }
  }
  join();
}

void background_flush::join() noexcept {
  if (t_.joinable()) {
    if (t_.get_id() == std::this_thread::get_id()) t_.detach(); // the helper itself, after its flush
    else t_.join();
  }
  if (st_ && st_->thread) ::CloseHandle(st_->thread);
  st_.reset();
}

} // namespace npipe::detail
