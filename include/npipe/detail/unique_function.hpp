// SPDX-License-Identifier: MIT
#pragma once
// A move-only std::function (C++23 has std::move_only_function): completion
// handlers such as use_future's and use_awaitable's cannot be copied.

#include <memory>
#include <type_traits>
#include <utility>

namespace npipe::detail {

template <class Sig>
class unique_function;

template <class R, class... Args>
class unique_function<R(Args...)> {
public:
  unique_function() noexcept = default;
  unique_function(std::nullptr_t) noexcept {}
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, unique_function> &&
                                              std::is_invocable_r_v<R, std::decay_t<F>&, Args...>>>
  unique_function(F&& f) : p_(std::make_unique<model<std::decay_t<F>>>(std::forward<F>(f))) {}
  unique_function(unique_function&&) noexcept = default;
  unique_function& operator=(unique_function&&) noexcept = default;

  explicit operator bool() const noexcept { return p_ != nullptr; }
  R operator()(Args... args) { return p_->call(std::forward<Args>(args)...); }

private:
  struct concept_t {
    virtual ~concept_t() = default;
    virtual R call(Args&&...) = 0;
  };
  template <class F>
  struct model final : concept_t {
    template <class G>
    explicit model(G&& g) : f(std::forward<G>(g)) {}
    R call(Args&&... args) override { return f(std::forward<Args>(args)...); }
    F f;
  };
  std::unique_ptr<concept_t> p_;
};

} // namespace npipe::detail
