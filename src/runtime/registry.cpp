// SPDX-License-Identifier: MIT
#include "runtime/registry.hpp"

#include <algorithm>

namespace npipe::detail {

net::execution_context::id runtime_registry::id;

void runtime_registry::enroll(const net::any_io_executor& ex, const std::shared_ptr<abandonable>& obj) {
  auto& ctx = net::query(ex, net::execution::context);
  net::use_service<runtime_registry>(ctx).add(obj);
}

void runtime_registry::add(const std::shared_ptr<abandonable>& obj) {
  std::lock_guard lk(mu_);
  if (objs_.size() >= prune_at_) { // forget objects that are gone; amortised O(1)
    objs_.erase(std::remove_if(objs_.begin(), objs_.end(), [](const auto& w) { return w.expired(); }), objs_.end());
    prune_at_ = std::max<std::size_t>(64, objs_.size() * 2);
  }
  objs_.push_back(obj);
}

void runtime_registry::shutdown() {
  std::vector<std::weak_ptr<abandonable>> objs;
  {
    std::lock_guard lk(mu_);
    objs.swap(objs_);
  }
  for (auto& w : objs)
    if (auto o = w.lock()) o->abandon();
}

} // namespace npipe::detail
