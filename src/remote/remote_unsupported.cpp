// SPDX-License-Identifier: MIT
// Builds without the remote transport (Windows for now): remote names get a
// clear not_supported instead of a link error or a silent local fallback.

#include "remote/remote.hpp"

namespace npipe::detail {

std::unique_ptr<connection_impl> connect_remote(const pipe_name& name, const client_options&, deadline,
                                                std::error_code& ec, std::span<const std::byte>) {
  set_error_detail("remote pipes (" + name.str() + ") go through npipe's TLS gateway, which this build (Windows) "
                   "does not include yet");
  ec = make_error_code(errc::not_supported);
  return nullptr;
}

} // namespace npipe::detail
