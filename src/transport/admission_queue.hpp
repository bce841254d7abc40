// SPDX-License-Identifier: MIT
#pragma once
// admission_queue: where a local server's admission puts the clients it
// admitted, for whoever takes them. Both servers consume it: server::accept()
// takes the oldest (waiting up to a deadline, or watching native_handle()),
// and the async server takes them all on its executor when woken. The
// admission (Linux: admission_posix.cpp; Windows: local_win32.cpp) does not
// know which of the two it serves.

#include "transport/transport.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <system_error>
#include <vector>

namespace npipe::detail {

class admission_queue {
public:
  /// `wake`, if set, is called after every push (on the pushing thread, with
  /// no lock held) to tell the consumer there may be clients to take.
  explicit admission_queue(std::function<void()> wake = {}) : wake_(std::move(wake)) {}
  ~admission_queue();
  admission_queue(const admission_queue&) = delete;
  admission_queue& operator=(const admission_queue&) = delete;

  /// Queues an admitted client (any thread). After close() it is dropped:
  /// its handle closed, its instance freed. `wake` set: calls it.
  void push(admitted_client&& a);
  /// Queues a batch without calling `wake`: the caller takes them itself
  /// (the async server after an accept_ready()).
  void push_quietly(std::vector<admitted_client>&& batch);
  /// Waits until a client is queued, the queue is closed or `dl` passes;
  /// takes the oldest. Errors: timed_out, operation_aborted (closed).
  admitted_client pop(deadline dl, std::error_code& ec);
  /// Takes every queued client without waiting (none once closed).
  std::vector<admitted_client> take_all();
  /// Wakes pop(), drops what is queued (outside the lock: dropping frees
  /// instances, which takes the server's lock) and every later push.
  void close() noexcept;

  /// A descriptor (Linux: an eventfd; Windows: a manual-reset event),
  /// readable or signalled exactly while pop() would not wait; made on the
  /// first call, owned by the queue, closed by its destructor only (so a
  /// caller's poll set never holds a number that was reused).
  std::intptr_t native_handle(std::error_code& ec) const noexcept;

private:
  void signal_locked() const noexcept; // the handle follows !q_.empty() || closed_

  std::function<void()> wake_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<admitted_client> q_; // each holds an instance: bounded by the server's instance cap
  bool closed_ = false;
  mutable std::intptr_t ready_ = -1; // native_handle()'s, -1 until asked for
  mutable bool signalled_ = false;
};

} // namespace npipe::detail
