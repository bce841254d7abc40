// SPDX-License-Identifier: MIT
// How the async server takes clients in: where the system has a listening
// socket (Linux) it waits for it on the executor and accepts there
// (accept_ready); either way it takes what the admission queued
// (take_admitted) and makes each an async_pipe on its own strand (admitted).

#include "runtime/async_pipe.hpp"
#include "runtime/async_server.hpp"
#include "transport/admission_queue.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(dispatch.hpp)
#include NPIPE_NET_HEADER(post.hpp)

#include <algorithm>
#include <new>

namespace npipe::detail {

// Where the system has a listening socket (Linux), the server waits for it
// on the executor (listen_, on sweep_strand_) and accepts there: a client
// whose hello came with its connect is admitted, adopted and (with serve())
// handed its first request on this I/O thread, with no hop through the
// admission thread, which keeps only the clients that must wait.
void async_server_impl::start_listening() {
#if defined(NPIPE_NET_HAS_POSIX_STREAM_DESCRIPTOR)
  auto fd = admission_->listen_handle();
  if (fd < 0) {
    admission_->accept_on_own_thread(); // none to wait on (or no descriptor left)
    return;
  }
  std::error_code ec;
  listen_.assign(static_cast<int>(fd), into(ec));
  if (ec) {
    close_native_handle(fd);
    admission_->accept_on_own_thread();
    return;
  }
  {
    std::lock_guard lk(mu_);
    listen_closed_ = false; // stop() waits until the strand has closed it
  }
  net::dispatch(sweep_strand_, [self = shared_from_this()] { self->await_clients(); });
#endif
}

void async_server_impl::await_clients() {
#if defined(NPIPE_NET_HAS_POSIX_STREAM_DESCRIPTOR)
  listen_.async_wait(net::posix::descriptor_base::wait_read, [w = weak_from_this()](const net_error_code& ec) {
    auto self = w.lock();
    if (!self) return;
    std::shared_ptr<server_impl> admission;
    {
      std::lock_guard lk(self->mu_);
      if (self->stopping_) return; // closed by stop()
      admission = self->admission_;
    }
    if (ec) { // the wait itself failed: let the admission thread accept
      admission->accept_on_own_thread();
      return;
    }
    timeout pause{};
    try {
      pause = admission->accept_ready();
      self->take_admitted();
    } catch (...) { // user code the last client ran (its observer, its handler) threw: accept on
      self->await_clients();
      throw;
    }
    if (pause > timeout::zero()) {
      self->listen_pause_.expires_after(pause); // out of descriptors
      self->listen_pause_.async_wait([w](const net_error_code& e) {
        if (auto s = w.lock(); s && !e) s->await_clients();
      });
      return;
    }
    self->await_clients();
  });
#endif
}

// On the admission thread (woken by its queue), or on an I/O thread after
// accept_ready(): every client queued now becomes an async_pipe.
void async_server_impl::take_admitted() {
  std::shared_ptr<server_impl> admission;
  {
    std::lock_guard lk(mu_);
    admission = admission_;
  }
  if (!admission) return;
  auto batch = admission->clients().take_all();
  // Those to start on this thread go last, so no client's handler delays
  // the others (or, by throwing, loses them).
  std::stable_partition(batch.begin(), batch.end(), [](const admitted_client& a) { return !a.run_here; });
  for (auto& a : batch) {
    try {
      admitted(std::move(a));
    } catch (const std::bad_alloc&) {
      if (a.run_here) throw; // as if its own handler ran out of memory
      // Out of memory taking this one client in (`a` drops it): the others still get their turn.
    }
  }
}

void async_server_impl::admitted(admitted_client&& a) {
  auto p = async_pipe::create(ex_);
  std::uint64_t id;
  {
    std::lock_guard lk(mu_);
    id = ++next_id_;
    ++admitted_count_;
    live_[id].pipe = p;
  }
  a.params.max_queued = opts_.max_queued_bytes;
  bool here = a.run_here;
  auto start = [self = shared_from_this(), p, id, a = std::move(a)]() mutable {
    p->on_closed = [w = std::weak_ptr<async_server_impl>(self), id] {
      if (auto s = w.lock()) s->closed(id);
    };
    std::error_code ec;
    auto h = a.release();
    if (!p->adopt(h, std::move(a.params), ec)) {
      self->closed(id);
      return;
    }
    self->place(p, id);
  };
  // The last client of an I/O thread's batch starts here at once; the
  // others are queued, so no client's handler delays the rest of its batch.
  if (here) net::dispatch(p->strand(), std::move(start));
  else net::post(p->strand(), std::move(start));
}

} // namespace npipe::detail
