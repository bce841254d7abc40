// SPDX-License-Identifier: MIT
#include "transport/admission_queue.hpp"

#include "core/error_detail.hpp"

#ifdef _WIN32
#include "transport/win32_util.hpp"
#else
#include "transport/posix_util.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#endif

#include <utility>

namespace npipe::detail {

void admitted_client::drop() noexcept {
  if (handle == -1) return;
  close_native_handle(std::exchange(handle, -1));
  if (auto done = std::move(params.on_close)) done();
}

admission_queue::~admission_queue() {
  close();
  if (ready_ == -1) return;
#ifdef _WIN32
  ::CloseHandle(reinterpret_cast<HANDLE>(ready_));
#else
  ::close(static_cast<int>(ready_));
#endif
}

void admission_queue::push(admitted_client&& a) {
  {
    std::lock_guard lk(mu_);
    if (closed_) return; // `a` drops on the way out, outside the lock
    q_.push_back(std::move(a));
    signal_locked();
  }
  cv_.notify_one();
  if (wake_) wake_();
}

void admission_queue::report(std::error_code ec, std::string detail) {
  {
    std::lock_guard lk(mu_);
    if (closed_) return;
    failed_ = ec;
    failed_detail_.swap(detail);
    signal_locked();
  }
  cv_.notify_one();
}

admitted_client admission_queue::pop(deadline dl, std::error_code& ec) {
  std::unique_lock lk(mu_);
  auto ready = [&] { return !q_.empty() || closed_ || failed_; };
  if (dl.never()) cv_.wait(lk, ready);
  else if (!cv_.wait_until(lk, dl.at, ready)) {
    ec = make_error_code(errc::timed_out);
    return {};
  }
  if (q_.empty() && failed_ && !closed_) {
    ec = std::exchange(failed_, {});
    set_error_detail(failed_detail_);
    signal_locked();
    return {};
  }
  if (q_.empty()) {
    ec = make_error_code(errc::operation_aborted);
    return {};
  }
  auto a = std::move(q_.front());
  q_.pop_front();
  signal_locked();
  return a;
}

std::deque<admitted_client> admission_queue::take_all() {
  std::deque<admitted_client> all; // made here: libstdc++'s deque allocates even empty
  std::lock_guard lk(mu_);
  all.swap(q_);
  signal_locked();
  return all;
}

void admission_queue::close() noexcept {
  std::deque<admitted_client> dropped;
  {
    std::lock_guard lk(mu_);
    closed_ = true;
    dropped.swap(q_);
    signal_locked();
  }
  cv_.notify_all();
  // `dropped` ends here: each closes its handle and frees its instance.
}

std::intptr_t admission_queue::native_handle(std::error_code& ec) const noexcept {
  std::lock_guard lk(mu_);
  if (ready_ == -1) {
#ifdef _WIN32
    HANDLE e = ::CreateEventW(nullptr, TRUE, FALSE, nullptr);
    if (!e) {
      ec = win32_error(::GetLastError());
      set_error_detail("cannot make the server's readiness event");
      return -1;
    }
    ready_ = reinterpret_cast<std::intptr_t>(e);
#else
    int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) {
      ec = errno_error(errno);
      set_error_detail("cannot make the server's readiness descriptor (eventfd)");
      return -1;
    }
    ready_ = fd;
#endif
    signal_locked();
  }
  return ready_;
}

void admission_queue::signal_locked() const noexcept {
  if (ready_ == -1) return;
  bool want = !q_.empty() || closed_ || failed_;
  if (want == signalled_) return;
#ifdef _WIN32
  auto e = reinterpret_cast<HANDLE>(ready_);
  if (want ? ::SetEvent(e) : ::ResetEvent(e)) signalled_ = want;
#else
  std::uint64_t v = 1;
  auto n = want ? ::write(static_cast<int>(ready_), &v, sizeof v) : ::read(static_cast<int>(ready_), &v, sizeof v);
  if (n == static_cast<ssize_t>(sizeof v)) signalled_ = want;
#endif
}

} // namespace npipe::detail
