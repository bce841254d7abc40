// SPDX-License-Identifier: MIT
#pragma once
// The async server runtime behind npipe::async_server.

#include "runtime/registry.hpp"
#include "transport/transport.hpp"

#include <npipe/async.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(posix/stream_descriptor.hpp)
#include NPIPE_NET_HEADER(steady_timer.hpp)
#include NPIPE_NET_HEADER(strand.hpp)

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <vector>

namespace npipe::detail {

class async_pipe;
class session;

class async_server_impl final : public abandonable, public std::enable_shared_from_this<async_server_impl> {
public:
  explicit async_server_impl(const net::any_io_executor& ex);
  ~async_server_impl() override;
  void abandon() noexcept override;

  bool open(const pipe_name& name, const async_server_options& opts, std::error_code& ec);
  void accept(detail::cancellation_slot slot, completion<async_connection> done);
  void serve(request_handler h);
  void set_observer(std::function<void(const client_event&)> f);
  /// Graceful when `wait`; otherwise closes everything without waiting.
  void stop(timeout grace, bool wait);
  server_stats stats() const;
  bool is_open() const noexcept;
  std::string native_path() const;
  const pipe_name& name() const noexcept { return name_; }
  const async_server_options& options() const noexcept { return opts_; }

  // For sessions.
  void event(const client_event& e);
  void count_request(std::ptrdiff_t d);
  void count_queued(std::ptrdiff_t d);

private:
  struct accept_op {
    std::uint64_t id;
    completion<async_connection> done;
  };
  struct entry {
    std::weak_ptr<async_pipe> pipe;
    std::weak_ptr<session> sess;
  };

  void take_admitted() noexcept;
  void start_batch(std::vector<admitted_client>& batch);
  void admitted(admitted_client&& a, bool here);
  void start_listening();
  void await_clients(); // on sweep_strand_
  void place(const std::shared_ptr<async_pipe>& p, std::uint64_t id);
  void closed(std::uint64_t id);
  void abort_accept(std::uint64_t id);
  void drop_observer();
  void arm_sweep();
  void sweep();

  net::any_io_executor ex_;
  pipe_name name_;
  async_server_options opts_;
  std::shared_ptr<server_impl> admission_;
  net::strand<net::any_io_executor> sweep_strand_;
  net::steady_timer sweep_; // on sweep_strand_
#if defined(NPIPE_NET_HAS_POSIX_STREAM_DESCRIPTOR)
  // Where the system has one (Linux): the listening socket (a descriptor of
  // our own), waited on here, and the pause when out of descriptors; on sweep_strand_.
  net::posix::stream_descriptor listen_;
  net::steady_timer listen_pause_;
  static constexpr bool listen_supported = true;
#else
  static constexpr bool listen_supported = false;
#endif

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool listen_closed_ = true; // no listen_ wait set up, or stop() has closed it (on sweep_strand_)
  std::uint64_t next_id_ = 0, next_accept_ = 0, admitted_count_ = 0;
  std::map<std::uint64_t, entry> live_; // every admitted connection until it closes
  std::deque<std::shared_ptr<async_pipe>> ready_;
  std::deque<accept_op> accepts_;
  std::shared_ptr<request_handler> handler_;
  net::any_io_executor work_; // tracks outstanding work while open (under mu_)
  std::shared_mutex obs_mu_;
  std::function<void(const client_event&)> observer_; // under obs_mu_
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::ptrdiff_t> in_flight_{0};
  std::atomic<std::ptrdiff_t> queued_{0};
};

} // namespace npipe::detail
