// SPDX-License-Identifier: MIT
// The public connection API: argument checks, then the transport.

#include "remote/remote.hpp"
#include "transport/transport.hpp"

namespace npipe {

using detail::call_scope;
using detail::deadline;
using detail::throw_error;

connection::connection() noexcept = default;
connection::connection(std::unique_ptr<detail::connection_impl> impl) noexcept : impl_(std::move(impl)) {}
connection::connection(connection&&) noexcept = default;
connection& connection::operator=(connection&& o) noexcept {
  if (this != &o) {
    close();
    impl_ = std::move(o.impl_);
  }
  return *this;
}
connection::~connection() = default;

namespace {
const pipe_name no_connection_name;
const peer_identity no_peer;

bool check_open(const std::unique_ptr<detail::connection_impl>& impl, std::error_code& ec) {
  if (impl) return true;
  detail::set_error_detail("this connection object holds no connection (default-constructed or moved from)");
  ec = make_error_code(errc::not_connected);
  return false;
}
} // namespace

bool connection::is_open() const noexcept { return impl_ && impl_->is_open() && !impl_->broken(); }
pipe_type connection::type() const noexcept { return impl_ ? impl_->type() : pipe_type::message; }
read_mode connection::read_mode() const noexcept { return impl_ ? impl_->read_mode() : npipe::read_mode::message; }
const peer_identity& connection::peer() const noexcept { return impl_ ? impl_->peer() : no_peer; }
const pipe_name& connection::name() const noexcept { return impl_ ? impl_->name() : no_connection_name; }
std::size_t connection::peer_max_message_size() const noexcept { return impl_ ? impl_->peer_max_message_size() : 0; }

native_handle_type connection::native_handle(std::error_code& ec) const noexcept {
  call_scope scope(ec);
  if (!check_open(impl_, ec)) return detail::to_native_handle(-1);
  if (!impl_->is_open()) {
    detail::set_error_detail("this connection was closed; its handle is gone");
    ec = make_error_code(errc::not_connected);
    return detail::to_native_handle(-1);
  }
  std::intptr_t h = impl_->native_handle();
  if (h == -1) {
    detail::set_error_detail("this connection runs over no operating-system handle");
    ec = make_error_code(errc::not_supported);
  }
  return detail::to_native_handle(h);
}
native_handle_type connection::native_handle() const {
  std::error_code ec;
  auto h = native_handle(ec);
  if (ec) throw_error(ec, "no native handle");
  return h;
}

void connection::set_read_mode(npipe::read_mode m, std::error_code& ec) noexcept {
  call_scope scope(ec);
  if (check_open(impl_, ec)) impl_->set_read_mode(m, ec);
}
void connection::set_read_mode(npipe::read_mode m) {
  std::error_code ec;
  set_read_mode(m, ec);
  if (ec) throw_error(ec, "cannot set read mode");
}

void connection::write(std::span<const std::byte> data, timeout t, std::error_code& ec) noexcept {
  call_scope scope(ec);
  if (check_open(impl_, ec)) impl_->write(data, deadline::after(t), ec);
}
void connection::write(std::span<const std::byte> data, timeout t) {
  std::error_code ec;
  write(data, t, ec);
  if (ec) throw_error(ec, "write to " + name().str() + " failed");
}

read_result connection::read(std::span<std::byte> buf, timeout t, std::error_code& ec) noexcept {
  call_scope scope(ec);
  if (!check_open(impl_, ec)) return {};
  return impl_->read(buf, deadline::after(t), ec);
}
read_result connection::read(std::span<std::byte> buf, timeout t) {
  std::error_code ec;
  auto r = read(buf, t, ec);
  if (ec) throw_error(ec, "read from " + name().str() + " failed");
  return r;
}

std::vector<std::byte> connection::receive(timeout t, std::error_code& ec) {
  call_scope scope(ec);
  if (!check_open(impl_, ec)) return {};
  return impl_->receive(deadline::after(t), ec);
}
std::vector<std::byte> connection::receive(timeout t) {
  std::error_code ec;
  auto v = receive(t, ec);
  if (ec) throw_error(ec, "receive from " + name().str() + " failed");
  return v;
}
std::string connection::receive_string(timeout t, std::error_code& ec) {
  auto v = receive(t, ec);
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}
std::string connection::receive_string(timeout t) {
  auto v = receive(t);
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

std::vector<std::byte> connection::transact(std::span<const std::byte> request, timeout t, std::error_code& ec) {
  call_scope scope(ec);
  if (!check_open(impl_, ec)) return {};
  return impl_->transact(request, deadline::after(t), ec);
}
std::vector<std::byte> connection::transact(std::span<const std::byte> request, timeout t) {
  std::error_code ec;
  auto v = transact(request, t, ec);
  if (ec) throw_error(ec, "transact on " + name().str() + " failed");
  return v;
}
std::string connection::transact(std::string_view request, timeout t, std::error_code& ec) {
  auto v = transact(std::as_bytes(std::span(request)), t, ec);
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}
std::string connection::transact(std::string_view request, timeout t) {
  auto v = transact(std::as_bytes(std::span(request)), t);
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

peek_result connection::peek(std::span<std::byte> buf, std::error_code& ec) noexcept {
  call_scope scope(ec);
  if (!check_open(impl_, ec)) return {};
  return impl_->peek(buf, ec);
}
peek_result connection::peek(std::span<std::byte> buf) {
  std::error_code ec;
  auto r = peek(buf, ec);
  if (ec) throw_error(ec, "peek on " + name().str() + " failed");
  return r;
}

void connection::flush(timeout t, std::error_code& ec) noexcept {
  call_scope scope(ec);
  if (check_open(impl_, ec)) impl_->flush(deadline::after(t), ec);
}
void connection::flush(timeout t) {
  std::error_code ec;
  flush(t, ec);
  if (ec) throw_error(ec, "flush on " + name().str() + " failed");
}

void connection::close() noexcept {
  if (impl_) impl_->close();
}

namespace {
std::unique_ptr<detail::connection_impl> open_client(const pipe_name& name, const client_options& opts, deadline dl,
                                                     std::error_code& ec, std::span<const std::byte> first = {}) {
  if (name.empty()) {
    detail::set_error_detail("the pipe name is empty (a default-constructed pipe_name)");
    ec = make_error_code(errc::invalid_name);
    return nullptr;
  }
  if (!detail::check_client_options(opts, ec)) return nullptr;
  if (!name.is_local()) return detail::connect_remote(name, opts, dl, ec, first);
  return detail::connect_local(name, opts, dl, ec, first);
}
} // namespace

connection connect(const pipe_name& name, const client_options& opts, timeout t, std::error_code& ec) {
  call_scope scope(ec);
  return connection(open_client(name, opts, deadline::after(t), ec));
}

connection connect(const pipe_name& name, const client_options& opts, std::error_code& ec) {
  return connect(name, opts, forever, ec);
}

connection connect(const pipe_name& name, const client_options& opts, timeout t) {
  std::error_code ec;
  auto c = connect(name, opts, t, ec);
  if (ec) throw_error(ec, "cannot connect to " + name.str());
  return c;
}

std::vector<std::byte> call(const pipe_name& name, std::span<const std::byte> request, timeout t, std::error_code& ec,
                            const client_options& opts) {
  call_scope scope(ec);
  auto dl = deadline::after(t);
  // A small request travels with the handshake: one round trip, as CallNamedPipe.
  bool pipelined = request.size() <= detail::pipelined_request_max;
  connection c(open_client(name, opts, dl, ec, pipelined ? request : std::span<const std::byte>{}));
  if (ec) return {};
  auto reply = pipelined ? c.receive(dl.remaining(), ec) : c.transact(request, dl.remaining(), ec);
  c.close();
  return reply;
}

std::vector<std::byte> call(const pipe_name& name, std::span<const std::byte> request, std::error_code& ec,
                            const client_options& opts) {
  return call(name, request, forever, ec, opts);
}

std::vector<std::byte> call(const pipe_name& name, std::span<const std::byte> request, timeout t,
                            const client_options& opts) {
  std::error_code ec;
  auto v = call(name, request, t, ec, opts);
  if (ec) throw_error(ec, "call to " + name.str() + " failed");
  return v;
}

std::string call(const pipe_name& name, std::string_view request, timeout t, std::error_code& ec,
                 const client_options& opts) {
  auto v = call(name, std::as_bytes(std::span(request)), t, ec, opts);
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

std::string call(const pipe_name& name, std::string_view request, std::error_code& ec, const client_options& opts) {
  return call(name, request, forever, ec, opts);
}

std::string call(const pipe_name& name, std::string_view request, timeout t, const client_options& opts) {
  auto v = call(name, std::as_bytes(std::span(request)), t, opts);
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

} // namespace npipe
