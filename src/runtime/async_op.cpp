// SPDX-License-Identifier: MIT
#include "runtime/async_op.hpp"

namespace npipe::detail {

void finish_op(async_op& o, std::error_code ec, const std::string& detail) {
  if (o.timer) o.timer->cancel();
  if (ec) set_error_detail(detail);
  if (o.on_msg) std::exchange(o.on_msg, nullptr)(ec, {});
  else if (o.on_some) std::exchange(o.on_some, nullptr)(ec, read_result{});
  else if (o.on_sent) std::exchange(o.on_sent, nullptr)(ec, 0);
  else if (o.on_done) std::exchange(o.on_done, nullptr)(ec);
  if (o.then_receive) std::exchange(o.then_receive, nullptr)(ec, {});
}

} // namespace npipe::detail
