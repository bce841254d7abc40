// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// npipe error codes.
///
/// Every failing npipe call reports one `std::error_code` in the npipe
/// category. Its value carries two things: the npipe condition (what went
/// wrong, the same on every system) and, where the failure came from the
/// operating system, the OS code (errno on Linux, `GetLastError()` on
/// Windows). Compare against the condition; read the OS code for diagnostics:
///
/// @code
/// std::error_code ec;
/// auto c = npipe::connect(name, {}, std::chrono::seconds(1), ec);
/// if (ec == npipe::errc::pipe_busy) { /* every instance is taken */ }
/// else if (ec) std::cerr << ec.message() << " (OS code " << npipe::os_error(ec) << ")\n";
/// @endcode
///
/// Errors that carry an OS code also compare equal to the matching generic
/// condition (`ec == std::errc::connection_refused`).
///
/// What the texts say, one rule everywhere:
/// - `ec.message()` of a code that carries an OS code is the condition in a
///   few words and the OS's own message ("not found [OS error 2: No such
///   file or directory]"): the same condition comes from pipes, key files
///   and TCP ports, so no advice about pipes is added to it.
/// - `ec.message()` of a code without one (npipe found the condition
///   itself) is the condition's generic advice ("all instances of the pipe
///   are busy; wait with a timeout or ...").
/// - last_error_detail() names the specific cause where npipe knows it: the
///   path, port, peer, user or limit involved, and for TLS which side
///   refused and why. Print it in preference to the generic advice, with the
///   OS's message when there is one; `npipe` does exactly that.

#include <npipe/export.h>

#include <string>
#include <system_error>

namespace npipe {

/// What went wrong, independent of the operating system.
enum class errc : int {
  ok = 0,
  not_found = 1,          ///< no server is listening on this name (Win32 ERROR_FILE_NOT_FOUND)
  pipe_busy = 2,          ///< every instance of the pipe is taken (ERROR_PIPE_BUSY)
  more_data = 3,          ///< the buffer held only part of the message (ERROR_MORE_DATA); npipe's own reads
                          ///< say so in read_result::more_data instead, with no error
  timed_out = 4,          ///< the deadline passed (ERROR_SEM_TIMEOUT)
  message_too_large = 5,  ///< a message exceeds the receiver's limit
  name_in_use = 6,        ///< another live server owns this name
  access_denied = 7,      ///< the access policy or file permissions refuse this peer
  broken_pipe = 8,        ///< the peer closed the pipe (ERROR_BROKEN_PIPE)
  protocol_error = 9,     ///< the peer sent bytes that are not npipe's protocol
  invalid_name = 10,      ///< the pipe name is malformed or cannot be mapped
  invalid_argument = 11,  ///< a parameter or option is out of range
  not_connected = 12,     ///< the connection is closed or was never opened
  operation_aborted = 13, ///< the server or connection was closed while waiting
  invalid_state = 14,     ///< the call does not fit the connection's state (e.g. unread data)
  unsafe_directory = 15,  ///< the pipe directory fails the safety checks
  not_supported = 16,     ///< the operation is not available in this build or on this pipe
  system_error = 17,      ///< an OS failure with no closer npipe meaning; see os_error()
};

/// The npipe error category ("npipe"). Codes of this category encode an
/// npipe::errc plus an optional OS code.
NPIPE_API const std::error_category& category() noexcept;

/// The condition category npipe::errc values belong to when compared.
NPIPE_API const std::error_category& condition_category() noexcept;

/// Make an npipe error code, optionally keeping the OS code that caused it.
NPIPE_API std::error_code make_error_code(errc e, int os_code = 0) noexcept;

/// Make the condition for comparisons: `ec == npipe::errc::pipe_busy`.
NPIPE_API std::error_condition make_error_condition(errc e) noexcept;

/// The npipe condition of any error code (errc::system_error for codes of
/// other categories, errc::ok for success).
NPIPE_API errc condition_of(const std::error_code& ec) noexcept;

/// The OS code kept inside an npipe error code (0 if none). For codes of
/// the system category, their value.
NPIPE_API int os_error(const std::error_code& ec) noexcept;

/// The short stable name of a condition ("pipe_busy").
NPIPE_API const char* to_string(errc e) noexcept;

} // namespace npipe

template <>
struct std::is_error_condition_enum<npipe::errc> : std::true_type {};

namespace npipe {
/// Specifics (paths, pids, uids, limits) about the failure of the npipe call
/// this thread made last, e.g. "pipe directory /tmp/.npipe is owned by uid
/// 1000", or for TLS "the gateway at 192.0.2.10:4455 refused the TLS
/// handshake: this end's certificate has expired (...)". It is always that
/// call's own: every call clears it first, so a failure with nothing
/// specific to say leaves it empty, and a call that succeeds leaves it empty
/// too, never an earlier call's text. An async completion handler sees its
/// own operation's (empty on success). Throwing overloads include it in
/// what().
NPIPE_API std::string last_error_detail();
} // namespace npipe
