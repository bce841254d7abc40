// SPDX-License-Identifier: MIT
#pragma once
// A test with an io_context that `n` threads run for the test's duration.

#include "test_support.hpp"

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

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
  asio::io_context ctx_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
};

} // namespace npipe::test
