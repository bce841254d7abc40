// SPDX-License-Identifier: MIT
#include "transport/transport.hpp"

namespace npipe {

using detail::deadline;

namespace {
const pipe_name no_server_name;
const server_options default_options;
} // namespace

server::server() noexcept = default;
server::server(const pipe_name& name, const server_options& opts) { open(name, opts); }
server::server(server&&) noexcept = default;
server& server::operator=(server&& o) noexcept {
  if (this != &o) {
    close();
    impl_ = std::move(o.impl_);
    name_ = std::move(o.name_);
    opts_ = std::move(o.opts_);
  }
  return *this;
}
server::~server() { close(); }

void server::open(const pipe_name& name, const server_options& opts, std::error_code& ec) noexcept {
  detail::call_scope scope(ec);
  try {
    if (!detail::check_server_open(impl_ != nullptr, name, ec)) return;
    impl_ = detail::open_local_server(name, opts, ec);
    if (impl_) {
      name_ = name;
      opts_ = opts;
    }
  } catch (const std::bad_alloc&) {
    ec = detail::no_memory_error();
  } catch (const std::system_error& e) { // a lock or thread the system would not give: this call fails, no more
    ec = e.code();
  }
}

void server::open(const pipe_name& name, const server_options& opts) {
  std::error_code ec;
  open(name, opts, ec);
  if (ec) detail::throw_error(ec, "cannot create pipe " + name.str());
}

bool server::is_open() const noexcept { return impl_ && impl_->is_open(); }

connection server::accept(timeout t, std::error_code& ec) {
  detail::call_scope scope(ec);
  if (!impl_) {
    detail::set_error_detail("this server is not open");
    ec = make_error_code(errc::not_connected);
    return {};
  }
  return connection(impl_->accept(deadline::after(t), ec));
}

connection server::accept(timeout t) {
  std::error_code ec;
  auto c = accept(t, ec);
  if (ec) detail::throw_error(ec, "accept on " + name_.str() + " failed");
  return c;
}

void server::close() noexcept {
  if (impl_) impl_->close();
}

const pipe_name& server::name() const noexcept { return impl_ ? name_ : no_server_name; }
const server_options& server::options() const noexcept { return impl_ ? opts_ : default_options; }
std::string server::native_path() const { return impl_ ? impl_->native_path() : std::string(); }
unsigned server::active_instances() const noexcept { return impl_ ? impl_->active_instances() : 0; }

native_handle_type server::native_handle(std::error_code& ec) const noexcept {
  detail::call_scope scope(ec);
  if (!impl_) {
    detail::set_error_detail("this server is not open");
    ec = make_error_code(errc::not_connected);
    return detail::to_native_handle(-1);
  }
  return detail::to_native_handle(impl_->native_handle(ec));
}
native_handle_type server::native_handle() const {
  std::error_code ec;
  auto h = native_handle(ec);
  if (ec) detail::throw_error(ec, "no native handle for server " + name_.str());
  return h;
}

} // namespace npipe
