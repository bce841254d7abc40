// SPDX-License-Identifier: MIT
// The public async classes forward to the runtime; every operation starts on
// the pipe's strand.

#include "runtime/async_pipe.hpp"
#include "runtime/async_server.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(post.hpp)

namespace npipe {
namespace detail {
namespace {

// An end with no pipe (moved from, or the placeholder of a failed accept)
// completes every operation with not_connected instead of reaching one.
template <class... A>
bool no_pipe(const std::shared_ptr<async_pipe>& p, completion<A...>& done) {
  if (p) return false;
  set_error_detail("this async_connection was moved from (or is a failed accept's result); use the one it was "
                   "moved to, or make a new one");
  done(make_error_code(errc::not_connected), A{}...);
  return true;
}

} // namespace

void async_ops::connect(const std::shared_ptr<async_pipe>& p, const pipe_name& name, const client_options& opts,
                        timeout t, detail::cancellation_slot slot, completion<> done) {
  if (no_pipe(p, done)) return;
  net::post(p->strand(), [p, name, opts, t, slot, d = std::move(done)]() mutable {
    p->connect(name, opts, t, slot, std::move(d));
  });
}

void async_ops::send(const std::shared_ptr<async_pipe>& p, net::const_buffer msg, timeout t,
                     detail::cancellation_slot slot, completion<std::size_t> done) {
  if (no_pipe(p, done)) return;
  net::post(p->strand(), [p, msg, t, slot, d = std::move(done)]() mutable { p->send(msg, {}, t, slot, std::move(d)); });
}

void async_ops::receive(const std::shared_ptr<async_pipe>& p, timeout t, detail::cancellation_slot slot,
                        completion<std::vector<std::byte>> done) {
  if (no_pipe(p, done)) return;
  net::post(p->strand(), [p, t, slot, d = std::move(done)]() mutable { p->receive(t, slot, std::move(d)); });
}

void async_ops::read_some(const std::shared_ptr<async_pipe>& p, net::mutable_buffer buf, timeout t,
                          detail::cancellation_slot slot, completion<read_result> done) {
  if (no_pipe(p, done)) return;
  net::post(p->strand(), [p, buf, t, slot, d = std::move(done)]() mutable { p->read_some(buf, t, slot, std::move(d)); });
}

void async_ops::transact(const std::shared_ptr<async_pipe>& p, net::const_buffer request, timeout t,
                         detail::cancellation_slot slot, completion<std::vector<std::byte>> done) {
  if (no_pipe(p, done)) return;
  auto b = static_cast<const std::byte*>(request.data());
  std::vector<std::byte> copy(b, b + request.size());
  net::post(p->strand(), [p, c = std::move(copy), t, slot, d = std::move(done)]() mutable {
    p->transact(std::move(c), t, slot, std::move(d));
  });
}

void async_ops::flush(const std::shared_ptr<async_pipe>& p, timeout t, detail::cancellation_slot slot,
                      completion<> done) {
  if (no_pipe(p, done)) return;
  net::post(p->strand(), [p, t, slot, d = std::move(done)]() mutable { p->flush(t, slot, std::move(d)); });
}

void async_ops::accept(const std::shared_ptr<async_server_impl>& s, detail::cancellation_slot slot,
                       completion<async_connection> done) {
  if (!s) {
    set_error_detail("the server is not open");
    done(make_error_code(errc::not_connected), async_connection(net::any_io_executor()));
    return;
  }
  s->accept(slot, std::move(done));
}

} // namespace detail

// ---------------------------------------------------------- async_connection

async_connection::async_connection(const executor_type& ex)
    : ex_(ex), impl_(ex ? detail::async_pipe::create(ex) : nullptr) {}
async_connection::async_connection(const executor_type& ex, std::shared_ptr<detail::async_pipe> impl)
    : ex_(ex), impl_(std::move(impl)) {}
// The moved-from end keeps its executor (as an Asio socket does) and is closed.
async_connection::async_connection(async_connection&& o) noexcept : ex_(o.ex_), impl_(std::move(o.impl_)) {}
async_connection& async_connection::operator=(async_connection&& o) noexcept {
  if (this != &o) {
    close();
    ex_ = o.ex_;
    impl_ = std::move(o.impl_);
  }
  return *this;
}
async_connection::~async_connection() { close(); }

bool async_connection::is_open() const noexcept { return impl_ && impl_->is_open() && !impl_->broken(); }
pipe_type async_connection::type() const noexcept { return impl_ ? impl_->params().type : pipe_type::message; }
read_mode async_connection::read_mode() const noexcept { return impl_ ? impl_->mode() : read_mode::message; }
const peer_identity& async_connection::peer() const noexcept {
  static const peer_identity none;
  return impl_ ? impl_->params().peer : none;
}
const pipe_name& async_connection::name() const noexcept {
  static const pipe_name none;
  return impl_ ? impl_->params().name : none;
}

void async_connection::cancel() noexcept {
  if (impl_) net::post(impl_->strand(), [p = impl_] { p->cancel(); });
}

void async_connection::close() noexcept {
  if (!impl_) return;
  impl_->closing();
  try {
    net::post(impl_->strand(), [p = impl_] { p->close(); });
  } catch (...) {
    // Out of memory: the pipe's destructor still frees the instance.
  }
}

// -------------------------------------------------------------- async_server

async_server::async_server(const executor_type& ex) : ex_(ex) {}
async_server::async_server(const executor_type& ex, const pipe_name& name, const async_server_options& opts) : ex_(ex) {
  open(name, opts);
}
async_server::async_server(async_server&&) noexcept = default;
async_server& async_server::operator=(async_server&& o) noexcept {
  if (this != &o) {
    close();
    ex_ = std::move(o.ex_);
    impl_ = std::move(o.impl_);
  }
  return *this;
}
async_server::~async_server() { close(); }

void async_server::open(const pipe_name& name, const async_server_options& opts, std::error_code& ec) noexcept {
  detail::call_scope scope(ec);
  try {
    if (!detail::check_server_open(impl_ != nullptr, name, ec)) return;
    auto s = std::make_shared<detail::async_server_impl>(ex_);
    if (!s->open(name, opts, ec)) return;
    detail::runtime_registry::enroll(ex_, s);
    impl_ = std::move(s);
  } catch (const std::bad_alloc&) {
    ec = detail::no_memory_error();
  } catch (const std::system_error& e) { // as server::open: fail this call, never terminate
    ec = e.code();
  }
}

void async_server::open(const pipe_name& name, const async_server_options& opts) {
  std::error_code ec;
  open(name, opts, ec);
  if (ec) detail::throw_error(ec, "cannot create pipe " + name.str());
}

bool async_server::is_open() const noexcept { return impl_ && impl_->is_open(); }

void async_server::serve_with(request_handler h) {
  if (!impl_) {
    detail::clear_error_detail(); // the text is this failure's, not an earlier call's
    detail::throw_error(make_error_code(errc::not_connected), "serve() needs an open server");
  }
  impl_->serve(std::move(h));
}

void async_server::on_client_event(std::function<void(const client_event&)> observer) {
  if (impl_) impl_->set_observer(std::move(observer));
}

void async_server::stop(timeout grace) {
  if (impl_) impl_->stop(grace, true);
}

void async_server::close() noexcept {
  if (!impl_) return;
  try {
    impl_->stop(no_wait, false);
  } catch (...) {
  }
}

server_stats async_server::stats() const { return impl_ ? impl_->stats() : server_stats{}; }
const pipe_name& async_server::name() const noexcept {
  static const pipe_name none;
  return impl_ ? impl_->name() : none;
}
std::string async_server::native_path() const { return impl_ ? impl_->native_path() : std::string(); }

} // namespace npipe
