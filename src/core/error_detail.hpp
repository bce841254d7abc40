// SPDX-License-Identifier: MIT
#pragma once
// npipe::last_error_detail(): the specifics of the failure the calling
// thread's last npipe call reported (implemented in transport/common.cpp).

#include <string>
#include <system_error>

namespace npipe::detail {

/// Record specifics for npipe::last_error_detail() on this thread.
void set_error_detail(std::string detail);
void clear_error_detail() noexcept;
/// Throw std::system_error for `ec` with `what` and the recorded detail.
[[noreturn]] void throw_error(const std::error_code& ec, const std::string& what);

/// The rule every public call keeps, in one place: the detail belongs to the
/// call that just returned. It is cleared on entry, so a failure with nothing
/// specific to say leaves it empty, never an earlier call's; and cleared
/// again when the call succeeds, so a step that failed inside it and was
/// recovered from leaves nothing to be read as current.
class call_scope {
public:
  /// Also clears `ec`, which the call then sets on failure.
  explicit call_scope(std::error_code& ec) noexcept : ec_(ec) {
    ec_.clear();
    clear_error_detail();
  }
  ~call_scope() {
    if (!ec_) clear_error_detail();
  }
  call_scope(const call_scope&) = delete;
  call_scope& operator=(const call_scope&) = delete;

private:
  std::error_code& ec_;
};

} // namespace npipe::detail
