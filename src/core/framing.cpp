// SPDX-License-Identifier: MIT
#include "core/framing.hpp"

#include <cstring>
#include <limits>

namespace npipe::detail::framing {
namespace {

std::size_t whole_size(protocol::frame_type t) noexcept {
  return protocol::frame_header_size + (t == protocol::frame_type::consumed ? protocol::consumed_payload : 0);
}

} // namespace

step reader::next(std::span<const std::byte> in, bool stop_at_data) noexcept {
  if (err_) return {event::error, 0, frame_at_};
  if (in_data_) {
    if (left_ > 0) return {event::data, 0, frame_at_, left_};
    in_data_ = false; // its payload is all taken
  }
  if (ahead_) {
    if (!stop_at_data) {
      ahead_ = false;
      in_data_ = true;
      left_ = ahead_length_;
    }
    return {event::data, 0, frame_at_, ahead_length_};
  }
  // The frame's bytes: straight from the input when they are all there and
  // none are held from an earlier piece; else gathered in hold_.
  std::size_t used = 0;
  const std::byte* p = in.data();
  if (held_ == 0) frame_at_ = offset_;
  auto gather = [&](std::size_t want) { // precondition: held_ <= want
    std::size_t c = std::min(want - held_, in.size() - used);
    if (c) std::memcpy(hold_.data() + held_, in.data() + used, c);
    held_ = static_cast<std::uint8_t>(held_ + c);
    used += c;
    offset_ += c;
    return held_ == want;
  };
  if (held_ > 0 || in.size() < protocol::frame_header_size) { // else the header is whole in the input
    if (held_ < protocol::frame_header_size && !gather(protocol::frame_header_size))
      return {event::need_more, used, frame_at_};
    p = hold_.data();
  }
  protocol::frame_header h;
  std::error_code ec;
  auto st = protocol::decode_frame_header(std::span(p, protocol::frame_header_size), max_, h, ec);
  if (st != protocol::decode_status::done) {
    err_ = ec;
    if (ec == errc::message_too_large) {
      std::uint32_t len = 0;
      for (int i = 3; i >= 0; --i) len = (len << 8) | std::to_integer<std::uint32_t>(p[1 + i]);
      bad_length_ = len;
    }
    return {event::error, used, frame_at_};
  }
  const std::size_t whole = whole_size(h.type);
  if (p != hold_.data() && in.size() < whole) {
    // A consumed frame cut after its header: keep what is here.
    gather(protocol::frame_header_size);
    p = hold_.data();
  }
  if (p == hold_.data()) {
    if (!gather(whole)) return {event::need_more, used, frame_at_};
    held_ = 0;
  } else {
    used = whole;
    offset_ += whole;
  }
  step s{event::need_more, used, frame_at_};
  switch (h.type) {
  case protocol::frame_type::data:
    s.what = event::data;
    s.length = h.length;
    if (stop_at_data) {
      ahead_ = true;
      ahead_length_ = h.length;
    } else {
      in_data_ = true;
      left_ = h.length;
    }
    break;
  case protocol::frame_type::flush: s.what = event::flush; break;
  case protocol::frame_type::flush_ack: s.what = event::flush_ack; break;
  case protocol::frame_type::consumed:
    s.what = event::consumed;
    s.consumed = protocol::decode_consumed(
        std::span<const std::byte, protocol::consumed_payload>(p + protocol::frame_header_size, protocol::consumed_payload));
    break;
  }
  return s;
}

std::string reader::error_detail() const {
  if (err_ == errc::message_too_large)
    return "the peer sent a " + std::to_string(bad_length_) + "-byte frame header over this end's limit of " +
           std::to_string(max_) + " bytes; the connection is closed";
  if (err_) return "the peer sent a malformed frame; the connection is closed";
  return {};
}

std::error_code check_send(pipe_type type, std::size_t size, std::size_t peer_limit, std::string& detail) {
  if (type != pipe_type::message) return {};
  if (size <= peer_limit && size <= std::numeric_limits<std::uint32_t>::max()) return {};
  detail = "a " + std::to_string(size) + "-byte message exceeds the peer's limit of " + std::to_string(peer_limit) +
           " bytes; nothing was sent";
  return make_error_code(errc::message_too_large);
}

} // namespace npipe::detail::framing
