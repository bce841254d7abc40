// SPDX-License-Identifier: MIT
#pragma once
// Pending async operations live inside npipe's objects (a pipe's queued
// receives, a server's queued accepts), not inside Asio's reactor, so they
// can form reference cycles with their handlers (a coroutine frame that owns
// the connection whose receive it awaits). Asio destroys its own pending
// operations, without invoking them, when the execution context shuts down;
// this service does the same for npipe's, which breaks those cycles.

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(any_io_executor.hpp)
#include NPIPE_NET_HEADER(execution_context.hpp)

#include <memory>
#include <mutex>
#include <vector>

namespace npipe::detail {

class abandonable {
public:
  virtual ~abandonable() = default;
  /// Destroy every pending operation without invoking it. Called once, when
  /// no thread runs the context any more.
  virtual void abandon() noexcept = 0;
};

class runtime_registry final : public net::execution_context::service {
public:
  static net::execution_context::id id;
  explicit runtime_registry(net::execution_context& ctx) : net::execution_context::service(ctx) {}

  /// Register `obj` with the context behind `ex`.
  static void enroll(const net::any_io_executor& ex, const std::shared_ptr<abandonable>& obj);

private:
  void add(const std::shared_ptr<abandonable>& obj);
  void shutdown() override;

  std::mutex mu_;
  std::vector<std::weak_ptr<abandonable>> objs_;
  std::size_t prune_at_ = 64;
};

} // namespace npipe::detail
