// SPDX-License-Identifier: MIT
#pragma once
// Linux async pipe: what its three files share (async_pipe_posix.cpp: the
// end's life, sending and closing; async_connect_posix.cpp: connecting, local
// and remote; async_receive_posix.cpp: receiving) -- the sizes it works
// with, its operation and its connect state.

#include "runtime/async_pipe.hpp"
#include "runtime/net_error_posix.hpp"
#include "remote/dial.hpp"

#include "core/protocol.hpp"
#include "transport/local_posix.hpp"
#include "transport/posix_util.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(steady_timer.hpp)
#include NPIPE_NET_HEADER(strand.hpp)

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace npipe::detail {
namespace async_posix {
inline constexpr std::size_t scratch_size = 64u << 10;   // one read's worth; per thread, not per connection
inline constexpr std::size_t header_read = 16u << 10;    // a first read on an idle connection asks for this much
inline constexpr std::size_t lookahead_limit = 4u << 20; // how far a flush reads ahead for its acknowledgement
inline constexpr std::size_t byte_receive = 64u << 10;   // byte read mode: most a receive returns
inline constexpr std::size_t max_batch = 64;             // sends gathered into one write
inline constexpr std::size_t acks_per_write = 256;       // flush acknowledgements gathered into one write
// How long a consumed receipt waits for a write to ride with before it goes alone.
inline constexpr std::chrono::microseconds receipt_delay{1000};

// A run of flush acknowledgements to write from, instead of one queued operation each.
inline const std::array<std::byte, acks_per_write * protocol::frame_header_size>& ack_run() {
  static const auto run = [] {
    std::array<std::byte, acks_per_write * protocol::frame_header_size> a{};
    auto one = protocol::encode_frame_header(protocol::frame_type::flush_ack, 0);
    for (std::size_t i = 0; i < acks_per_write; ++i) std::copy(one.begin(), one.end(), a.begin() + i * one.size());
    return a;
  }();
  return run;
}

inline std::error_code err(errc e) { return make_error_code(e); }

inline std::byte* scratch() {
  thread_local std::unique_ptr<std::byte[]> buf(new std::byte[scratch_size]);
  return buf.get();
}


} // namespace async_posix

struct async_pipe_op : async_op {
  std::array<std::byte, protocol::frame_header_size> hdr{};
  std::uint64_t target = 0; // a flusher (and its flush frame): the acknowledgement it waits for
  std::uint64_t pos = 0;    // a flusher: the length of our stream before its flush frame, once written
  bool pos_known = false;
  /// A data frame (not a flush frame).
  bool is_data() const noexcept { return hdr[0] == static_cast<std::byte>(protocol::frame_type::data); }
  /// A byte pipe's frame before the last of its send (which carries the completion).
  bool is_piece() const noexcept { return is_data() && !on_sent && !then_receive; }
};

struct async_pipe::connecting {
  pipe_name name;
  client_options opts;
  deadline dl;
  std::unique_ptr<op> o;
  std::string path;     // what messages name: the socket's path, or the gateway
  socket_target target; // a local pipe: where connect(2) goes
  std::string hello;
  std::uint32_t wait_ms = 0;
  peer_identity server;
  std::vector<std::byte> in = std::vector<std::byte>(protocol::reply_size + 4096);
  std::size_t got = 0;
  net::steady_timer timer;
  bool replying = false;
  std::chrono::milliseconds retry_pause{1}; // between attempts when the server let us go in the handshake
  net::steady_timer retry;                 // that pause, for a remote link (timer is the deadline then)
  dial_plan plan;                           // remote: the gateway, TLS, the link's deadline (dial.hpp)
  std::shared_ptr<gateway_dialer> dialer;   // remote: dialing it
  explicit connecting(const net::any_io_executor& ex) : timer(ex), retry(ex) {}
};

} // namespace npipe::detail
