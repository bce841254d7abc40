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
#include <string>
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
  /// The admission failed in a way accept() should hear of (it cannot make
  /// a pipe instance, say): the next pop() that finds no client returns
  /// `ec` with `detail`, once (a later report replaces an unread one).
  void report(std::error_code ec, std::string detail);
  /// Waits until a client is queued, an error reported, the queue closed
  /// or `dl` passed; takes the oldest client. Errors: the reported one,
  /// timed_out, operation_aborted (closed).
  admitted_client pop(deadline dl, std::error_code& ec);
  /// Takes every queued client without waiting (none once closed). Nothing
  /// is allocated under the lock: if it throws, the clients stay queued.
  std::deque<admitted_client> take_all();
  /// Wakes pop(), drops what is queued (outside the lock: dropping frees
  /// instances, which takes the server's lock) and every later push.
  void close() noexcept;

  /// A descriptor (Linux: an eventfd; Windows: a manual-reset event),
  /// readable or signalled exactly while pop() would not wait; made on the
  /// first call, owned by the queue, closed by its destructor only (so a
  /// caller's poll set never holds a number that was reused).
  std::intptr_t native_handle(std::error_code& ec) const noexcept;

private:
  void signal_locked() const noexcept; // the handle follows whether pop() would not wait

  std::function<void()> wake_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<admitted_client> q_; // each holds an instance: bounded by the server's instance cap
  bool closed_ = false;
  std::error_code failed_; // report()'s, until a pop() returns it
  std::string failed_detail_;
  mutable std::intptr_t ready_ = -1; // native_handle()'s, -1 until asked for
  mutable bool signalled_ = false;
};

} // namespace npipe::detail
