// SPDX-License-Identifier: MIT
#pragma once
// The memory rules of npipe's framing, shared by every end that frames
// (the blocking connection and the async pipe): how much a receiver may
// commit for a message it has not received yet, how byte pipes are cut into
// frames, and what queued frames cost. Pure code, no I/O.
//
// A peer controls the lengths in the frame headers it sends. A receiver
// therefore never allocates from a header: it grows a message's buffer as
// the payload arrives, to at most twice what has arrived (and at least
// first_step), so a peer can pin no more memory than it has sent plus a
// small fixed allowance.

#include "core/protocol.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace npipe::detail::framing {

/// The smallest receive limit an end may declare in the handshake (and
/// max_message_size may be set to): byte pipes are cut into frames no
/// larger than the peer's limit, so a tiny limit would turn one write into
/// a flood of headers. 4 KiB also lets call() send a small request with
/// the handshake, as CallNamedPipe does.
inline constexpr std::size_t min_receive_limit = 4096;
/// The largest limit the handshake can carry.
inline constexpr std::size_t max_receive_limit = 0xFFFFFFFFu;

/// Byte pipes: the largest frame a writer sends.
inline constexpr std::size_t byte_chunk = 1u << 20;

/// The first room a receiver gives a message whose payload has begun to
/// arrive; from there it doubles with what has arrived.
inline constexpr std::size_t first_step = 16u << 10;

/// Room to give a message of `total` payload bytes of which `have` have
/// arrived (so far the buffer holds `have`): never more than `total`, never
/// more than max(first_step, 2 * have).
constexpr std::size_t room_for(std::size_t have, std::size_t total) noexcept {
  return std::min(total, std::max(first_step, have > total / 2 ? total : 2 * have));
}

/// Frame size for a byte pipe whose peer accepts `peer_limit` bytes per
/// frame (at least min_receive_limit after the handshake).
constexpr std::size_t byte_frame_size(std::size_t peer_limit) noexcept {
  return std::min(byte_chunk, std::max(peer_limit, min_receive_limit));
}

/// What one queued control frame (a flush acknowledgement) counts against
/// the peer's queued-bytes cap: its bytes on the wire. Writers keep a count,
/// not a buffer, so their memory does not grow with it.
inline constexpr std::size_t control_frame_cost = protocol::frame_header_size;

} // namespace npipe::detail::framing
