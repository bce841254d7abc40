// SPDX-License-Identifier: MIT
#pragma once
// async_pipe_base's member functions (runtime/async_op.hpp). Included by
// each system's receiving file, which instantiates the base once with its
// complete operation type.

#include "core/error_detail.hpp"
#include "runtime/async_op.hpp"

namespace npipe::detail {

template <class Derived, class Op>
std::shared_ptr<Derived> async_pipe_base<Derived, Op>::create(const net::any_io_executor& ex) {
  auto p = std::make_shared<Derived>(ex);
  runtime_registry::enroll(ex, p);
  return p;
}

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
bool async_pipe_base<Derived, Op>::cannot_send(Op& o) {
  if (!is_open()) finish(o, make_error_code(errc::not_connected), "the pipe is not open");
  else if (tx_broken_)
    finish(o, make_error_code(errc::broken_pipe), "an earlier send failed part-way; this connection cannot send any more");
  else return false;
  return true;
}

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::send(net::const_buffer msg, std::vector<std::byte> owned, timeout t,
                                        detail::cancellation_slot slot, completion<std::size_t> done) {
  auto o = make_op(t, slot);
  o->on_sent = std::move(done);
  o->size = owned.empty() ? msg.size() : owned.size();
  if (cannot_send(*o)) return;
  std::string detail;
  if (auto e = self().size_refusal(o->size, detail)) {
    finish(*o, e, detail);
    return;
  }
  std::span<const std::byte> data(owned.empty() ? static_cast<const std::byte*>(msg.data()) : owned.data(), o->size);
  self().queue_message(std::move(o), data, std::move(owned));
}

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::transact(std::vector<std::byte> request, timeout t, detail::cancellation_slot slot,
                                            completion<std::vector<std::byte>> done) {
  auto o = make_op(t, slot);
  o->on_msg = std::move(done);
  if (!is_open()) {
    finish(*o, make_error_code(errc::not_connected), "the pipe is not open");
    return;
  }
  // The pipe's own rules first, then whether a message waits (which may
  // look at the pipe), then whether this one can go.
  auto why = pipe_rules::transact_refusal(p_.type, mode(), false);
  if (!why) why = pipe_rules::transact_refusal(p_.type, mode(), self().unread());
  if (why) {
    finish(*o, make_error_code(errc::invalid_state), why);
    return;
  }
  if (cannot_send(*o)) return;
  std::string detail;
  if (auto e = self().size_refusal(request.size(), detail)) {
    finish(*o, e, detail);
    return;
  }
  o->then_receive = std::move(o->on_msg);
  o->owned = std::move(request);
  o->payload = net::buffer(o->owned);
  self().queue_request(std::move(o));
}

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::flush(timeout t, detail::cancellation_slot slot, completion<> done) {
  auto o = make_op(t, slot);
  o->on_done = std::move(done);
  if (cannot_send(*o)) return;
  self().queue_flush(std::move(o));
}

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::cancel() {
  abort_readers();
  self().abort_io(make_error_code(errc::operation_aborted), {});
  // Writes go out in order, so those that have begun are the queue's head.
  std::size_t begun = 0;
  for (; begun < writes_.size() && self().begun(*writes_[begun]); ++begun)
    if (writes_[begun]->then_receive) writes_[begun]->cancelled = true; // ends once its request is out
  for (auto& o : withdraw_writes([&, i = std::size_t{0}](const Op&) mutable { return i++ >= begun; }))
    finish(*o, make_error_code(errc::operation_aborted));
  self().fail_connect(make_error_code(errc::operation_aborted), "the connect was cancelled");
}

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::close(std::error_code why, std::string detail) {
  if (closed_) return;
  self().fail_connect(why, detail.empty() ? "the connection was closed" : detail);
  self().before_close();
  closed_ = true;
  open_.store(false, std::memory_order_release);
  if (detail.empty()) detail = "the pipe was closed";
  auto rs = std::move(readers_);
  readers_.clear();
  for (auto& o : rs) finish(*o, why, detail);
  self().abort_io(why, detail);
  end_unstarted_writes(why, detail); // the one being written ends as its write stops
  self().release_io();
  if (p_.on_close) std::exchange(p_.on_close, nullptr)();
  if (on_closed) std::exchange(on_closed, nullptr)();
}

template <class Derived, class Op>
std::unique_ptr<Op> async_pipe_base<Derived, Op>::withdraw_write(std::size_t i) {
  auto taken = std::move(writes_[i]);
  writes_.erase(writes_.begin() + static_cast<std::ptrdiff_t>(i));
  tx_bytes_ -= Derived::queued_cost(*taken);
  return taken;
}

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::end_unstarted_writes(std::error_code why, const std::string& detail) {
  for (auto& o : withdraw_writes([](const Op& w) { return !w.started; })) finish(*o, why, detail);
}

template <class Derived, class Op>
void async_pipe_base<Derived, Op>::sent(Op& o) {
  if (o.timer) o.timer->cancel();
  if (o.then_receive && o.cancelled) { // cancelled while its request went out: the reply is owed
    debt_.gave_up(false);
    finish(o, make_error_code(errc::operation_aborted));
  } else if (o.then_receive && closed_) { // a completion that ran just now closed the pipe
    finish(o, make_error_code(errc::operation_aborted), "the pipe was closed");
  } else if (o.then_receive) { // transact: the request is out; now its reply
    auto r = std::make_unique<Op>();
    r->id = o.id;
    r->on_msg = std::move(o.then_receive);
    r->transact_reply = true;
    if (o.timer) start_deadline(self(), *r, o.timer->expiry()); // the transact's deadline goes on
    readers_.push_back(std::move(r));
  } else if (o.on_sent) {
    std::exchange(o.on_sent, nullptr)({}, o.size);
  }
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
