// SPDX-License-Identifier: MIT
#pragma once
// One connection that async_server::serve() runs: a session reads its
// requests, hands each to the handler and sends the replies in request
// order, within the in-flight and queued-bytes limits (async_session.cpp).
// request and reply (async_server.cpp) reach it through this class.

#include "runtime/async_pipe.hpp"
#include "runtime/async_server.hpp"

#include <npipe/async.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace npipe::detail {

class session : public std::enable_shared_from_this<session> {
public:
  session(std::shared_ptr<async_pipe> p, std::shared_ptr<async_server_impl> srv, std::shared_ptr<request_handler> h,
          std::uint64_t id)
      : pipe_(std::move(p)), srv_(srv), h_(std::move(h)), id_(id), max_in_flight_(srv->options().max_in_flight),
        max_queued_(srv->options().max_queued_bytes) {}

  std::uint64_t id() const noexcept { return id_; }
  const peer_identity& peer() const noexcept { return pipe_->params().peer; }
  net::any_io_executor executor() { return pipe_->strand(); }

  // On the strand.
  void start();
  void begin_stop();
  void idle_check(timeout idle);

  // Any thread.
  void reply_ready(std::uint64_t seq, std::vector<std::byte> bytes);
  void drop(std::string why);

private:
  void pump();
  void on_request(std::error_code ec, std::vector<std::byte> msg);
  void send_ready();
  void on_sent(std::error_code ec, std::size_t n);
  void end(std::error_code why, std::string detail);

  std::shared_ptr<async_pipe> pipe_;
  std::weak_ptr<async_server_impl> srv_;
  std::shared_ptr<request_handler> h_;
  std::uint64_t id_;
  unsigned max_in_flight_;
  std::size_t max_queued_;
  unsigned in_flight_ = 0;
  bool reading_ = false, stopping_ = false, ended_ = false;
  bool peer_done_ = false; // the client's end of stream came with requests in flight
  std::uint64_t next_seq_ = 0, send_seq_ = 0, requests_ = 0;
  std::map<std::uint64_t, std::vector<std::byte>> done_; // replies waiting for earlier ones
};

} // namespace npipe::detail
