// SPDX-License-Identifier: MIT
#pragma once
// posix_server, the Linux local-pipe server: the class, whose acceptor
// thread, open/accept/close, instance release and accepting on the caller's
// thread (accept_ready) are in local_posix.cpp and whose admission (the
// hello, handshake slots, waiting clients, the hand-over of an admitted
// client) is in admission_posix.cpp.

#include "core/pipe_rules.hpp"
#include "core/protocol.hpp"
#include "transport/admission_queue.hpp"
#include "transport/listener_posix.hpp"
#include "transport/transport.hpp"

#include <npipe/pipe_name.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace npipe::detail {

class posix_server final : public server_impl, public std::enable_shared_from_this<posix_server> {
public:
  posix_server(pipe_name name, server_options opts, std::function<void()> wake, bool caller_accepts)
      : name_(std::move(name)), opts_(std::move(opts)), clients_(std::move(wake)), caller_accepts_(caller_accepts) {}
  ~posix_server() override;

  bool open(std::error_code& ec);
  std::unique_ptr<connection_impl> accept(deadline dl, std::error_code& ec) override;
  void close() noexcept override;

  bool is_open() const noexcept override {
    std::lock_guard lk(mu_);
    return !closed_;
  }
  std::string native_path() const override { return path_; }
  unsigned active_instances() const noexcept override {
    std::lock_guard lk(mu_);
    return active_;
  }
  std::intptr_t native_handle(std::error_code& ec) const noexcept override { return clients_.native_handle(ec); }
  admission_queue& clients() noexcept override { return clients_; }
  std::intptr_t listen_handle() const noexcept override;
  std::chrono::milliseconds accept_ready(std::vector<admitted_client>& batch) override;
  void accept_on_own_thread() noexcept override;

private:
  struct pending {
    int fd;
    clock::time_point until;
    peer_identity peer;
    std::vector<std::byte> buf;
    std::uint64_t seq = 0; // accept order: the oldest of a user goes first when slots run out
  };
  struct waiter {
    int fd;
    clock::time_point until;
    peer_identity peer;
    protocol::hello hello;
    std::vector<std::byte> extra;
  };

  // The acceptor thread and instance release (local_posix.cpp).
  void wake() noexcept;
  void remove_name() noexcept;
  void release(std::int64_t uid);
  void run();
  // `batch`: not null on the thread in accept_ready, whose caller takes the
  // clients admitted there; those that must wait join the acceptor's lists.
  void accept_new(clock::time_point& paused_until, std::vector<admitted_client>* batch = nullptr);

  // Admission (admission_posix.cpp).
  bool read_hello(pending& p, clock::time_point now, std::vector<admitted_client>* batch = nullptr);
  void hold(pending p);
  void let_one_go(std::int64_t newcomer);
  void forget_pending(std::int64_t uid);
  void serve_pending(const std::vector<short>& revents, clock::time_point now);
  void on_hello(int fd, peer_identity peer, protocol::hello h, std::vector<std::byte> extra, clock::time_point now,
                std::vector<admitted_client>* batch);

  unsigned instance_cap() const noexcept { return pipe_rules::instance_cap(opts_); }

  enum class take { ok, full, user_full };
  take take_instance(std::int64_t uid);
  void serve_waiters(const std::vector<short>& revents, clock::time_point now);
  void admit(int fd, peer_identity peer, const protocol::hello& h, std::vector<std::byte> extra,
             std::vector<admitted_client>* batch = nullptr);

  pipe_name name_;
  server_options opts_;
  admission_queue clients_;
  std::atomic<bool> caller_accepts_; // the async server accepts (accept_ready); the acceptor thread does not
  std::string dir_, path_;
  listener listen_;
  std::mutex wake_mu_; // guards wake_fd_ once the acceptor runs
  int wake_fd_ = -1;
  std::thread thread_;

  std::mutex close_mu_;
  std::mutex accept_mu_; // held through an accept_ready() batch
  mutable std::mutex mu_;
  unsigned active_ = 0;
  std::map<std::int64_t, unsigned> per_user_; // connections per uid
  bool release_wakes_ = false;                // a waiting client may want a released instance
  bool closed_ = false;

  // The admission's state, under admit_mu_: the acceptor thread's, and
  // accept_ready's while it takes a batch (so every bound holds for both).
  static constexpr unsigned accept_batch = 256; // connections taken per wake-up before serving the others
  std::mutex admit_mu_;
  bool wake_acceptor_ = false;                 // accept_ready added to the lists: the acceptor must poll them
  std::vector<pending> pending_;               // in accept order
  std::vector<std::uint64_t> polled_seq_;      // which pending entries the last poll watched (acceptor only)
  std::map<std::int64_t, unsigned> pending_per_user_;
  std::uint64_t accept_seq_ = 0;
  std::deque<waiter> waiters_;
};

} // namespace npipe::detail
