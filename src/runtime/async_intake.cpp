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
      std::vector<admitted_client> batch;
      pause = admission->accept_ready(batch);
      self->start_batch(batch);
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

// On the admission thread, woken by its queue (or once in open()): every
// client queued now becomes an async_pipe, started on its strand later.
// Never throws: that would end the admission thread.
void async_server_impl::take_admitted() noexcept {
  std::shared_ptr<server_impl> admission;
  {
    std::lock_guard lk(mu_);
    admission = admission_;
  }
  if (!admission) return;
  try {
    for (auto& a : admission->clients().take_all()) {
      try {
        admitted(std::move(a), false);
      } catch (...) {
        // Out of memory taking this one client in (`a` drops it): the others still get their turn.
      }
    }
  } catch (...) {
    // take_all() could not be had (out of memory): they stay queued for the next wake.
  }
}

// On an I/O thread, what its accept_ready() admitted: the last starts here
// at once, the others are posted first, so no client's handler delays the
// rest (or, by throwing, loses them).
void async_server_impl::start_batch(std::vector<admitted_client>& batch) {
  for (std::size_t i = 0; i < batch.size(); ++i) {
    bool last = i + 1 == batch.size();
    try {
      admitted(std::move(batch[i]), last);
    } catch (const std::bad_alloc&) {
      if (last) throw; // as if its own handler ran out of memory
      // Out of memory taking this one client in (it drops): the others still get their turn.
    }
  }
}

void async_server_impl::admitted(admitted_client&& a, bool here) {
  auto p = async_pipe::create(ex_);
  std::uint64_t id;
  {
    std::lock_guard lk(mu_);
    id = ++next_id_;
    ++admitted_count_;
    live_[id].pipe = p;
  }
  a.params.max_queued = opts_.max_queued_bytes;
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
  if (here) net::dispatch(p->strand(), std::move(start));
  else net::post(p->strand(), std::move(start));
}

} // namespace npipe::detail
