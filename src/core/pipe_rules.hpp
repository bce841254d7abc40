// SPDX-License-Identifier: MIT
#pragma once
// Rules every pipe end keeps, whatever its system or style (blocking or
// async): what transact requires, and what happens to the reply of a
// transact that gave up. Pure code, no I/O; each end applies them to its
// own buffers.

namespace npipe::detail::pipe_rules {

/// The detail for a transact on an end that is not a message pipe in
/// message read mode (TransactNamedPipe's rule).
inline constexpr const char* transact_needs_message_mode = "transact needs a message pipe in message read mode";
/// The detail for a transact while a message is waiting unread
/// (TransactNamedPipe fails with ERROR_PIPE_BUSY there).
inline constexpr const char* transact_needs_no_unread = "the pipe holds an unread message; receive it before transact";

/// A transact whose request went out but whose reply did not come in time
/// (it timed out or was cancelled) still has that reply coming. Each end
/// keeps a reply_debt and discards those replies as they arrive, before
/// anything else is read: no later call (a transact, a receive, a read, a
/// peek) ever takes a reply meant for a transact that gave up.
struct reply_debt {
  unsigned owed = 0;         ///< whole replies yet to arrive (or to start arriving), to discard
  bool in_current = false;   ///< the message being received now is one of them: discard its rest
  bool any() const noexcept { return owed > 0 || in_current; }
  /// A transact gave up after its request went out; `mid_message`: part of
  /// its reply had already been taken in.
  void gave_up(bool mid_message) noexcept {
    if (mid_message) in_current = true;
    else ++owed;
  }
};

} // namespace npipe::detail::pipe_rules
