// SPDX-License-Identifier: MIT
#pragma once
// async_pipe_base's member functions (runtime/async_op.hpp). Included by
// each system's receiving file, which instantiates the base once with its
// complete operation type.

#include "core/error_detail.hpp"
#include "runtime/async_op.hpp"

namespace npipe::detail {

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::receive(timeout t, detail::cancellation_slot slot,
                                           completion<std::vector<std::byte>> done) {
  auto o = make_op(t, slot);
  o->on_msg = std::move(done);
  readers_.push_back(std::move(o));
  self().kick();
}

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::read_some(net::mutable_buffer buf, timeout t, detail::cancellation_slot slot,
                                             completion<read_result> done) {
  auto o = make_op(t, slot);
  o->on_some = std::move(done);
  o->buf = buf;
  readers_.push_back(std::move(o));
  self().kick();
}

template <class Derived, class Op>
std::unique_ptr<Op> async_pipe_base<Derived, Op>::make_op(timeout t, detail::cancellation_slot& slot) {
  auto o = std::make_unique<Op>();
  o->id = next_id_++;
  arm(*o, t, slot);
  return o;
}

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::arm(Op& o, timeout t, detail::cancellation_slot& slot) {
  arm_op(self(), o, t, slot);
}

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::finish(Op& o, std::error_code ec, const std::string& detail) {
  finish_op(o, ec, detail);
}

template <class Derived, class Op>
std::unique_ptr<Op> async_pipe_base<Derived, Op>::connect_op(const client_options& opts, bool connecting,
                                                           completion<> done) {
  auto o = std::make_unique<Op>();
  o->id = next_id_++;
  o->on_done = std::move(done);
  if (open_ || connecting || closed_) {
    finish(*o, make_error_code(errc::invalid_state),
           closed_ ? "this connection object was closed; make a new one"
                   : "this connection is already open or connecting");
    return nullptr;
  }
  if (std::error_code ec; !check_client_options(opts, ec)) {
    finish(*o, ec, last_error_detail());
    return nullptr;
  }
  return o;
}

template <class Derived, class Op>
bool async_pipe_base<Derived, Op>::end_reader(std::uint64_t id, errc why) {
  for (auto it = readers_.begin(); it != readers_.end(); ++it) {
    if ((*it)->id != id) continue;
    auto o = std::move(*it);
    readers_.erase(it);
    if (o->transact_reply) debt_.gave_up(false);
    finish(*o, make_error_code(why));
    return true;
  }
  return false;
}

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::abort_readers() {
  auto rs = std::move(readers_);
  readers_.clear();
  for (auto& o : rs) {
    if (o->transact_reply) debt_.gave_up(false);
    finish(*o, make_error_code(errc::operation_aborted));
  }
}

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::kick() {
  if (in_kick_) {
    kick_again_ = true;
    return;
  }
  in_kick_ = true;
  do {
    kick_again_ = false;
    self().kick_once();
  } while (kick_again_);
  in_kick_ = false;
}

} // namespace npipe::detail
