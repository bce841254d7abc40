// SPDX-License-Identifier: MIT
#pragma once
// Linux: an error from an Asio operation (as to_std() gives it: the
// system's in std::system_category()) as npipe reports it.

#include "transport/posix_util.hpp"

#include <npipe/error.hpp>

#include <npipe/detail/net.hpp>

#include <system_error>

namespace npipe::detail {

inline std::error_code io_error(const std::error_code& ec) {
  if (ec == net_error(net::error::eof)) return make_error_code(errc::broken_pipe);
  if (ec == net_error(net::error::operation_aborted)) return make_error_code(errc::operation_aborted);
  // Standalone Asio reports OS errors in its own category ("asio.system"),
  // not std::system_category(); to_std() gave Boost's the std one.
  if (ec.category() == net::error::get_system_category() || ec.category() == std::system_category())
    return errno_error(ec.value());
  return ec;
}

} // namespace npipe::detail
