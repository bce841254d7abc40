// SPDX-License-Identifier: MIT
// Fuzz target: the handshake and frame header codec.
#include "core/protocol.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace proto = npipe::detail::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = std::as_bytes(std::span(data, size));
  std::error_code ec;
  proto::hello h;
  std::size_t used = 0;
  if (proto::decode_hello(in, h, used, ec) == proto::decode_status::done) {
    if (used > size || h.name.empty() || h.name.size() > proto::max_name_bytes) std::abort();
    if (h.forwarded && (h.remote_user.empty() || h.remote_user.size() > proto::max_remote_user_bytes ||
                        h.remote_address.empty() || h.remote_address.size() > proto::max_remote_address_bytes))
      std::abort();
    auto wire = proto::encode_hello(h); // round trip
    proto::hello h2;
    std::size_t used2 = 0;
    if (proto::decode_hello(std::as_bytes(std::span(wire)), h2, used2, ec) != proto::decode_status::done ||
        used2 != used || h2.name != h.name || h2.wait_ms != h.wait_ms || h2.max_message != h.max_message ||
        h2.forwarded != h.forwarded || h2.remote_user != h.remote_user || h2.remote_address != h.remote_address)
      std::abort();
  }
  proto::reply r;
  if (proto::decode_reply(in, r, ec) == proto::decode_status::done) {
    auto wire = proto::encode_reply(r);
    if (std::memcmp(wire.data(), data, 8) != 0) std::abort();
  }
  const std::size_t limit = size ? data[0] * 1024u : 0;
  proto::frame_header f;
  if (proto::decode_frame_header(in, limit, f, ec) == proto::decode_status::done) {
    if (f.type == proto::frame_type::data && f.length > limit) std::abort(); // the limit holds
    if (f.type != proto::frame_type::data && f.length != 0) std::abort();
  }
  return 0;
}
