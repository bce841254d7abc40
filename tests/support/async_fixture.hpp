// SPDX-License-Identifier: MIT
#pragma once
// A test with an io_context that `n` threads run for the test's duration.

#include "test_support.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(executor_work_guard.hpp)
#include NPIPE_NET_HEADER(io_context.hpp)

#include <optional>
#include <thread>
#include <vector>

namespace npipe::test {

class async_test : public local_test {
protected:
  void run_threads(unsigned n = 2) {
    work_.emplace(ctx_.get_executor());
    for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { ctx_.run(); });
  }
  void TearDown() override {
    work_.reset();
    ctx_.stop();
    for (auto& t : threads_) t.join();
    local_test::TearDown();
  }
  net::io_context ctx_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
};

} // namespace npipe::test
