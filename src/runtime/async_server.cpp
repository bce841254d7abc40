// SPDX-License-Identifier: MIT
// The async server runtime: admitted clients (from the platform's admission,
// see transport.hpp) become async_pipes on the executor (async_intake.cpp);
// serve() runs a session per connection (async_session.cpp) with the
// in-flight and queued-bytes limits. This file: async_server_impl (open,
// idle sweep, placing a new pipe, accept, serve, stop, stats), and
// npipe::request and npipe::reply, which reach their session.

#include "runtime/async_pipe.hpp"
#include "runtime/async_server.hpp"
#include "runtime/async_session.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(dispatch.hpp)
#include NPIPE_NET_HEADER(execution/outstanding_work.hpp)
#include NPIPE_NET_HEADER(prefer.hpp)

#include <algorithm>

namespace npipe::detail {

async_server_impl::async_server_impl(const net::any_io_executor& ex)
    : ex_(ex), sweep_strand_(net::make_strand(ex)), sweep_(sweep_strand_)
#if defined(NPIPE_NET_HAS_POSIX_STREAM_DESCRIPTOR)
      ,
      listen_(sweep_strand_), listen_pause_(sweep_strand_)
#endif
{
}

async_server_impl::~async_server_impl() {
  if (admission_) admission_->close();
}

void async_server_impl::abandon() noexcept {
  std::deque<accept_op> accepts;
  std::deque<std::shared_ptr<async_pipe>> ready;
  std::shared_ptr<request_handler> h;
  net::any_io_executor work;
  {
    std::lock_guard lk(mu_);
    accepts.swap(accepts_);
    ready.swap(ready_);
    h = std::move(handler_);
    work = std::move(work_);
  }
  // destroyed here, outside the lock, without being invoked
}

bool async_server_impl::open(const pipe_name& name, const async_server_options& opts, std::error_code& ec) {
  if (!check_async_server_options(opts, ec)) return false;
  name_ = name;
  opts_ = opts;
  // Clients the admission thread admits are taken on that thread when it
  // wakes us (and started on their strands); those admitted on an I/O
  // thread (accept_ready) right there.
  auto admission = open_local_server(
      name, opts, ec,
      [w = weak_from_this()] {
        if (auto s = w.lock()) s->take_admitted();
      },
      /*caller_accepts=*/listen_supported);
  if (!admission) return false;
  {
    std::lock_guard lk(mu_);
    admission_ = admission;
  }
  take_admitted(); // any that came before admission_ was set
  start_listening();
  // An open server is outstanding work, as a pending async_accept is in
  // Asio: ctx.run() keeps going until stop() or close(), so clients that
  // come later are served.
  {
    std::lock_guard lk(mu_);
    work_ = net::prefer(ex_, net::execution::outstanding_work.tracked);
  }
  if (opts_.idle_timeout > timeout::zero()) net::dispatch(sweep_strand_, [self = shared_from_this()] { self->arm_sweep(); });
  return true;
}

void async_server_impl::arm_sweep() {
  auto every = std::clamp(opts_.idle_timeout / 4, timeout(10), timeout(1000));
  sweep_.expires_after(every);
  sweep_.async_wait([w = weak_from_this()](const net_error_code& ec) {
    if (ec) return;
    if (auto s = w.lock()) s->sweep();
  });
}

void async_server_impl::sweep() {
  std::vector<std::shared_ptr<async_pipe>> idle, keep_alive;
  std::vector<std::shared_ptr<session>> sessions;
  {
    std::lock_guard lk(mu_);
    if (stopping_) return;
    auto limit = clock::now() - opts_.idle_timeout;
    for (auto& [id, e] : live_) {
      // Nothing locked here may be released under mu_: the last reference to a
      // pipe runs its destructor, which unregisters it (and takes mu_).
      auto p = e.pipe.lock();
      if (!p || p->last_activity() > limit) {
        keep_alive.push_back(std::move(p));
        continue;
      }
      if (auto s = e.sess.lock()) {
        sessions.push_back(std::move(s));
        keep_alive.push_back(std::move(p));
      } else {
        idle.push_back(std::move(p));
      }
    }
  }
  for (auto& s : sessions)
    net::dispatch(s->executor(), [s, t = opts_.idle_timeout] { s->idle_check(t); });
  for (auto& p : idle)
    net::dispatch(p->strand(), [p, t = opts_.idle_timeout] {
      if (p->quiet() && clock::now() - p->last_activity() >= t)
        p->close(make_error_code(errc::timed_out), "closed by the server's idle timeout");
    });
  arm_sweep();
}

// On the new pipe's strand: hand it to serve(), to an accept, or to the queue.
void async_server_impl::place(const std::shared_ptr<async_pipe>& p, std::uint64_t id) {
  std::unique_lock lk(mu_);
  if (stopping_) {
    lk.unlock();
    p->close(make_error_code(errc::operation_aborted), "the server is stopping");
    return;
  }
  if (handler_) {
    auto s = std::make_shared<session>(p, shared_from_this(), handler_, id);
    live_[id].sess = s;
    lk.unlock();
    s->start();
    return;
  }
  if (!accepts_.empty()) {
    auto a = std::move(accepts_.front());
    accepts_.pop_front();
    lk.unlock();
    a.done({}, async_connection(ex_, p));
    return;
  }
  ready_.push_back(p);
}

void async_server_impl::accept(detail::cancellation_slot slot, completion<async_connection> done) {
  std::unique_lock lk(mu_);
  if (stopping_ || !admission_) {
    lk.unlock();
    set_error_detail(admission_ ? "the server is stopping" : "the server is not open");
    done(make_error_code(admission_ ? errc::operation_aborted : errc::not_connected), async_connection(ex_));
    return;
  }
  if (handler_) {
    lk.unlock();
    set_error_detail("this server runs serve(); it does not hand out connections");
    done(make_error_code(errc::invalid_state), async_connection(ex_));
    return;
  }
  if (!ready_.empty()) {
    auto p = std::move(ready_.front());
    ready_.pop_front();
    lk.unlock();
    done({}, async_connection(ex_, std::move(p)));
    return;
  }
  std::uint64_t id = ++next_accept_;
  if (slot.is_connected()) {
    slot.assign([w = weak_from_this(), id](detail::cancellation_type) {
      if (auto s = w.lock()) s->abort_accept(id);
    });
  }
  accepts_.push_back({id, std::move(done)});
}

void async_server_impl::abort_accept(std::uint64_t id) {
  std::unique_lock lk(mu_);
  for (auto it = accepts_.begin(); it != accepts_.end(); ++it) {
    if (it->id != id) continue;
    auto a = std::move(*it);
    accepts_.erase(it);
    lk.unlock();
    set_error_detail("the accept was cancelled");
    a.done(make_error_code(errc::operation_aborted), async_connection(ex_));
    return;
  }
}

void async_server_impl::serve(request_handler h) {
  std::deque<std::shared_ptr<async_pipe>> queued;
  {
    std::lock_guard lk(mu_);
    handler_ = std::make_shared<request_handler>(std::move(h));
    queued.swap(ready_);
  }
  for (auto& p : queued) {
    std::uint64_t id = 0;
    {
      std::lock_guard lk(mu_);
      for (auto& [i, e] : live_)
        if (e.pipe.lock() == p) id = i;
    }
    net::dispatch(p->strand(), [self = shared_from_this(), p, id] { self->place(p, id); });
  }
}

void async_server_impl::closed(std::uint64_t id) {
  std::lock_guard lk(mu_);
  live_.erase(id);
  cv_.notify_all();
}

void async_server_impl::event(const client_event& e) {
  std::shared_lock lk(obs_mu_); // stop() and close() wait for observers running now
  if (observer_) observer_(e);
}

void async_server_impl::set_observer(std::function<void(const client_event&)> f) {
  std::unique_lock lk(obs_mu_);
  observer_ = std::move(f);
}

void async_server_impl::drop_observer() {
  std::unique_lock lk(obs_mu_);
  observer_ = nullptr;
}

void async_server_impl::stop(timeout grace, bool wait) {
  std::shared_ptr<server_impl> admission;
  std::deque<accept_op> accepts;
  std::deque<std::shared_ptr<async_pipe>> ready;
  std::vector<std::shared_ptr<session>> sessions;
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    admission = admission_;
    accepts.swap(accepts_);
    ready.swap(ready_);
    for (auto& [id, e] : live_)
      if (auto s = e.sess.lock()) sessions.push_back(std::move(s));
  }
  net::dispatch(sweep_strand_, [self = shared_from_this()] {
    self->sweep_.cancel();
#if defined(NPIPE_NET_HAS_POSIX_STREAM_DESCRIPTOR)
    std::error_code ignore;
    self->listen_.close(into(ignore));
    self->listen_pause_.cancel();
#endif
    std::lock_guard lk(self->mu_);
    self->listen_closed_ = true;
    self->cv_.notify_all();
  });
  // Stop accepting and remove the name; clients in their handshake or
  // waiting for an instance are closed by the admission.
  if (admission) admission->close();
  for (auto& a : accepts) {
    set_error_detail("the server is stopping");
    a.done(make_error_code(errc::operation_aborted), async_connection(ex_));
  }
  for (auto& p : ready)
    net::dispatch(p->strand(), [p] { p->close(make_error_code(errc::operation_aborted), "the server is stopping"); });
  for (auto& s : sessions) net::dispatch(s->executor(), [s] { s->begin_stop(); });

  auto force_close = [&] {
    std::vector<std::shared_ptr<async_pipe>> all;
    {
      std::lock_guard lk(mu_);
      for (auto& [id, e] : live_)
        if (auto p = e.pipe.lock()) all.push_back(std::move(p));
    }
    for (auto& p : all)
      net::dispatch(p->strand(), [p] { p->close(make_error_code(errc::operation_aborted), "the server stopped"); });
  };
  auto release_work = [&] {
    std::lock_guard lk(mu_);
    work_ = net::any_io_executor();
  };
  if (!wait) {
    drop_observer(); // no event after close() returns
    force_close();
    release_work();
    return;
  }
  std::unique_lock lk(mu_);
  auto until = clock::now() + std::max(grace, timeout::zero());
  // Our descriptor of the listening socket closes on the strand: a graceful
  // stop returns with it closed (bounded, in case the executor is not running).
  cv_.wait_for(lk, std::chrono::seconds(2), [&] { return listen_closed_; });
  if (!cv_.wait_until(lk, until, [&] { return live_.empty(); })) {
    lk.unlock();
    force_close();
    lk.lock();
    // Closing is quick; bounded in case the executor is not running.
    cv_.wait_for(lk, std::chrono::seconds(2), [&] { return live_.empty(); });
  }
  lk.unlock();
  drop_observer(); // no event after stop() returns
  release_work();
}

server_stats async_server_impl::stats() const {
  std::lock_guard lk(mu_);
  server_stats s;
  s.connections = live_.size();
  s.admitted = admitted_count_;
  s.requests = requests_.load(std::memory_order_relaxed);
  s.in_flight = static_cast<std::size_t>(std::max<std::ptrdiff_t>(0, in_flight_.load(std::memory_order_relaxed)));
  s.queued_bytes = static_cast<std::size_t>(std::max<std::ptrdiff_t>(0, queued_.load(std::memory_order_relaxed)));
  return s;
}

void async_server_impl::count_request(std::ptrdiff_t d) {
  if (d > 0) requests_.fetch_add(static_cast<std::uint64_t>(d), std::memory_order_relaxed);
  in_flight_.fetch_add(d, std::memory_order_relaxed);
}

void async_server_impl::count_queued(std::ptrdiff_t d) { queued_.fetch_add(d, std::memory_order_relaxed); }

bool async_server_impl::is_open() const noexcept {
  std::lock_guard lk(mu_);
  return admission_ && !stopping_;
}

std::string async_server_impl::native_path() const { return admission_ ? admission_->native_path() : std::string(); }

} // namespace npipe::detail

namespace npipe {

const peer_identity& request::peer() const noexcept { return s_->peer(); }
std::uint64_t request::connection_id() const noexcept { return s_->id(); }

reply::reply(reply&&) noexcept = default;
reply& reply::operator=(reply&& o) noexcept {
  if (this != &o) {
    if (s_) s_->drop({});
    s_ = std::move(o.s_);
    seq_ = o.seq_;
  }
  return *this;
}
reply::~reply() {
  if (s_) s_->drop({});
}
void reply::send(std::vector<std::byte> bytes) {
  if (!s_) return;
  std::exchange(s_, nullptr)->reply_ready(seq_, std::move(bytes));
}
void reply::close_connection(std::string why) noexcept {
  if (!s_) return;
  std::exchange(s_, nullptr)->drop(std::move(why));
}
net::any_io_executor reply::get_executor() const { return s_->executor(); }

} // namespace npipe
