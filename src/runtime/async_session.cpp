// SPDX-License-Identifier: MIT
// The session of one connection that async_server::serve() runs
// (async_session.hpp): reading requests while the in-flight and
// queued-bytes limits allow, handing each to the handler, sending the
// replies in request order, and how the session ends (the client's end of
// stream, a failed reply, the idle timeout, a stop, a dropped request).

#include "runtime/async_session.hpp"

#include "runtime/async_pipe.hpp"
#include "runtime/async_server.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(dispatch.hpp)

namespace npipe::detail {

void session::start() {
  if (auto s = srv_.lock()) s->event(client_event{client_event::kind::connected, id_, peer(), 0, {}, {}});
  pump();
}

void session::begin_stop() {
  stopping_ = true;
  if (in_flight_ == 0) end({}, "the server is stopping");
}

void session::idle_check(timeout idle) {
  if (ended_ || in_flight_ > 0 || !pipe_->quiet()) return;
  if (clock::now() - pipe_->last_activity() >= idle)
    end(make_error_code(errc::timed_out),
        "closed after " + std::to_string(idle.count()) + " ms without a request (idle_timeout)");
}

void session::reply_ready(std::uint64_t seq, std::vector<std::byte> bytes) {
  net::dispatch(pipe_->strand(), [self = shared_from_this(), seq, b = std::move(bytes)]() mutable {
    if (self->ended_) return;
    self->done_.emplace(seq, std::move(b));
    self->send_ready();
  });
}

void session::drop(std::string why) {
  net::dispatch(pipe_->strand(), [self = shared_from_this(), why = std::move(why)]() mutable {
    self->end(make_error_code(errc::operation_aborted),
              why.empty() ? "the handler dropped the request without a reply" : std::move(why));
  });
}

void session::pump() {
  if (reading_ || stopping_ || ended_ || peer_done_ || in_flight_ >= max_in_flight_ ||
      pipe_->queued_bytes() >= max_queued_)
    return;
  reading_ = true;
  pipe_->receive(forever, {}, [self = shared_from_this()](std::error_code ec, std::vector<std::byte> msg) {
    self->on_request(ec, std::move(msg));
  });
}

void session::on_request(std::error_code ec, std::vector<std::byte> msg) {
  reading_ = false;
  if (ended_) return;
  if (ec) {
    // A client that hangs up between messages ends normally (it may have
    // read its last reply already while our write completion is on its way).
    bool normal = ec == errc::broken_pipe && !pipe_->eof_mid_message();
    if (normal && in_flight_ > 0) {
      // It may only have shut down its sending side and still be reading:
      // every request handed to the handler gets its reply, then we close.
      peer_done_ = true;
      return;
    }
    end(normal ? std::error_code() : ec, normal ? std::string() : last_error_detail());
    return;
  }
  ++in_flight_;
  ++requests_;
  auto srv = srv_.lock();
  if (srv) srv->count_request(+1);
  std::uint64_t seq = next_seq_++;
  try {
    (*h_)(request(std::move(msg), shared_from_this()), reply(shared_from_this(), seq));
  } catch (const std::exception& e) {
    end(make_error_code(errc::operation_aborted), std::string("the handler threw: ") + e.what());
    return;
  } catch (...) {
    end(make_error_code(errc::operation_aborted), "the handler threw");
    return;
  }
  pump();
}

void session::send_ready() {
  for (auto it = done_.find(send_seq_); it != done_.end(); it = done_.find(send_seq_)) {
    auto bytes = std::move(it->second);
    done_.erase(it);
    ++send_seq_;
    if (auto s = srv_.lock()) s->count_queued(static_cast<std::ptrdiff_t>(bytes.size()));
    std::size_t n = bytes.size();
    pipe_->send(net::const_buffer(), std::move(bytes), forever, {},
                [self = shared_from_this(), n](std::error_code ec, std::size_t) { self->on_sent(ec, n); });
  }
}

void session::on_sent(std::error_code ec, std::size_t n) {
  --in_flight_;
  if (auto s = srv_.lock()) {
    s->count_request(-1);
    s->count_queued(-static_cast<std::ptrdiff_t>(n));
  }
  if (ended_) return;
  if (ec) {
    // After the client's end of stream a failed reply means it has gone
    // altogether: a normal end, not an error.
    if (peer_done_ && ec == errc::broken_pipe) end({}, {});
    else end(ec, last_error_detail());
    return;
  }
  if (stopping_ && in_flight_ == 0) {
    end({}, "the server is stopping");
    return;
  }
  if (peer_done_ && in_flight_ == 0) {
    end({}, {}); // the last reply to a client that stopped sending has gone out
    return;
  }
  pump();
}

void session::end(std::error_code why, std::string detail) {
  if (ended_) return;
  ended_ = true;
  auto srv = srv_.lock();
  if (srv) {
    // Requests whose replies will never go out are no longer in flight.
    srv->count_request(-static_cast<std::ptrdiff_t>(in_flight_));
    srv->event(client_event{client_event::kind::disconnected, id_, peer(), requests_, why, detail});
  }
  in_flight_ = 0;
  done_.clear();
  pipe_->close(why ? why : make_error_code(errc::operation_aborted), detail);
}

} // namespace npipe::detail
