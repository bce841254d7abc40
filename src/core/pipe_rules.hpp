// SPDX-License-Identifier: MIT
#pragma once
// Rules every pipe end keeps, whatever its system or style (blocking or
// async), and both servers: the read mode an end starts in and may switch
// to, what transact requires, what happens to the reply of a transact that
// gave up, and how many instances a server runs. Pure code, no I/O; each
// end applies them to its own buffers.

#include <npipe/options.hpp>

#include <algorithm>
#include <optional>

namespace npipe::detail::pipe_rules {

/// The read mode an end starts in: the one asked for, else the pipe type's own.
constexpr read_mode initial_read_mode(pipe_type type, std::optional<read_mode> asked) noexcept {
  return asked.value_or(type == pipe_type::message ? read_mode::message : read_mode::byte);
}
/// Message read mode needs a message pipe (SetNamedPipeHandleState's rule).
constexpr bool read_mode_allowed(pipe_type type, read_mode m) noexcept {
  return !(m == read_mode::message && type == pipe_type::byte);
}
/// The detail when set_read_mode is refused (errc::invalid_argument).
inline constexpr const char* message_mode_needs_message_pipe =
    "message read mode needs a message pipe; this pipe was created as a byte pipe";

/// The detail for a transact on an end that is not a message pipe in
/// message read mode (TransactNamedPipe's rule).
inline constexpr const char* transact_needs_message_mode = "transact needs a message pipe in message read mode";
/// The detail for a transact while a message is waiting unread
/// (TransactNamedPipe fails with ERROR_PIPE_BUSY there).
inline constexpr const char* transact_needs_no_unread = "the pipe holds an unread message; receive it before transact";

/// Whether transact may go ahead: nullptr, or the detail to fail it with
/// (errc::invalid_state). `unread`: a message is waiting that no reply owed
/// to a transact that gave up accounts for.
constexpr const char* transact_refusal(pipe_type type, read_mode mode, bool unread) noexcept {
  if (type != pipe_type::message || mode != read_mode::message) return transact_needs_message_mode;
  if (unread) return transact_needs_no_unread;
  return nullptr;
}

/// How many instances a server runs at once: max_instances (unlimited_instances: no limit of its own) within max_connections.
constexpr unsigned instance_cap(const server_options& o) noexcept {
  return o.max_instances >= unlimited_instances ? o.max_connections : std::min(o.max_instances, o.max_connections);
}

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
