// SPDX-License-Identifier: MIT
#pragma once
// npipe's frame engine (docs/protocol.md), shared by every end that frames:
// the blocking connection and the async pipe, locally and over remote links.
// Pure code, no I/O and no locks: each end feeds it the bytes it read and
// sends what it builds, with its own buffers, deadlines and threads.
//
//  - reader: takes the peer's bytes in any pieces and reports whole control
//    frames and the start of each data frame, whose payload the caller takes
//    (from its buffer, or by reading straight into its destination). It owns
//    the receive limit and the error a bad frame ends the stream with.
//  - The memory rules: a receiver never allocates from a header. A message's
//    buffer grows as its payload arrives (room_for), so a peer can pin no
//    more memory than it has sent plus a small fixed allowance.
//  - The writer's rules: a message over the peer's limit is refused whole
//    (check_send); byte pipes are cut into frames (frame_cuts).
//  - flush_tracker and receipts: when a flush is answered, and when an end
//    tells a remote peer what it has consumed.

#include "core/protocol.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <system_error>

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

// ------------------------------------------------------------------ reading

/// What reader::next() found.
enum class event : std::uint8_t {
  need_more, ///< the input ended inside a header (its bytes are taken and kept)
  data,      ///< a data frame: `length` payload bytes follow (see reader::in_data)
  flush,     ///< the peer asks to be told when everything before this is read
  flush_ack, ///< the peer answers one of our flushes
  consumed,  ///< the peer's application has consumed `consumed` bytes of our stream
  error,     ///< the stream is bad (reader::error); nothing more can be read
};

struct step {
  event what = event::need_more;
  std::size_t used = 0;       ///< bytes of the input taken (headers and control payloads only)
  std::uint64_t at = 0;       ///< where the frame starts in the peer's stream
  std::uint32_t length = 0;   ///< data: the payload's announced length
  std::uint64_t consumed = 0; ///< consumed: the offset the peer reports
};

/// Reads the peer's frames, sans I/O. The caller owns the bytes: the reader
/// keeps only the few bytes of a frame header (or a consumed frame) that a
/// read cut in two, and where it is in the stream. It never allocates and
/// is a small value: a copy walks ahead (peek, looking for acknowledgements)
/// without moving the original.
class reader {
public:
  /// `max_message`: this end's receive limit; a longer data frame is an error.
  explicit reader(std::size_t max_message = max_receive_limit) noexcept : max_(max_message) {}

  /// The next frame from `in`. Control frames are reported whole; a data
  /// frame's header enters its payload (in_data(), left()), which the
  /// caller then takes with took(). Inside a data frame with payload left,
  /// reports it again ({data, used 0}); one whose payload is all taken ends
  /// here. `stop_at_data`: a data frame's header is taken but its payload
  /// not entered (data_ahead()) until a call without it.
  step next(std::span<const std::byte> in, bool stop_at_data = false) noexcept;

  /// Inside a data frame (entered, and not yet ended by next() or end_data()).
  bool in_data() const noexcept { return in_data_; }
  /// Payload bytes of the current data frame still to come.
  std::uint32_t left() const noexcept { return left_; }
  /// The caller took `n` <= left() payload bytes (from its buffer or straight from the stream).
  void took(std::size_t n) noexcept {
    left_ -= static_cast<std::uint32_t>(n);
    offset_ += n;
  }
  /// End the current data frame (its payload is all taken).
  void end_data() noexcept { in_data_ = false; }
  /// A data frame's header was taken with stop_at_data; its payload is not entered.
  bool data_ahead() const noexcept { return ahead_; }
  /// The next message has begun on the wire (a data header taken, whole or in part) but is not entered.
  bool holds_data_start() const noexcept {
    return ahead_ || (held_ > 0 && hold_[0] == static_cast<std::byte>(protocol::frame_type::data));
  }
  /// Part of a frame has been taken: a stream that ended here cut a frame.
  bool mid_frame() const noexcept { return in_data_ || ahead_ || held_ > 0; }
  /// Bytes of the peer's stream taken so far (headers and payload).
  std::uint64_t offset() const noexcept { return offset_; }
  std::size_t max_message() const noexcept { return max_; }
  /// Why the stream is bad (empty until next() reported event::error).
  std::error_code error() const noexcept { return err_; }
  /// What to tell the user about error().
  std::string error_detail() const;

private:
  std::size_t max_;
  std::uint64_t offset_ = 0;   // bytes taken
  std::uint64_t frame_at_ = 0; // where the frame being read starts
  std::uint32_t left_ = 0;
  std::uint32_t ahead_length_ = 0;
  std::uint32_t bad_length_ = 0; // an over-limit data frame's length, for the error's detail
  std::uint8_t held_ = 0;        // bytes of hold_ in use
  bool in_data_ = false;
  bool ahead_ = false;
  std::error_code err_;
  std::array<std::byte, protocol::frame_header_size + protocol::consumed_payload> hold_{};
};

// ------------------------------------------------------------------ writing

/// A send's check before anything goes out: a message over the peer's limit
/// (on a message pipe; byte pipes are cut to it) is refused whole. Empty, or
/// errc::message_too_large with `detail` set.
std::error_code check_send(pipe_type type, std::size_t size, std::size_t peer_limit, std::string& detail);

/// How a write becomes data frames: one for a message (an empty message too),
/// byte_frame_size(peer_limit) pieces for a byte pipe (none for no bytes).
class frame_cuts {
public:
  frame_cuts(pipe_type type, std::span<const std::byte> data, std::size_t peer_limit) noexcept
      : rest_(data), chunk_(type == pipe_type::message ? data.size() : byte_frame_size(peer_limit)),
        one_(type == pipe_type::message) {}
  /// The next frame's payload; false when there are no more.
  bool next(std::span<const std::byte>& part) noexcept {
    if (rest_.empty() && !one_) return false;
    one_ = false;
    part = rest_.first(std::min(chunk_, rest_.size()));
    rest_ = rest_.subspan(part.size());
    return true;
  }
  /// The payload still to cut.
  std::size_t left() const noexcept { return rest_.size(); }

private:
  std::span<const std::byte> rest_;
  std::size_t chunk_;
  bool one_;
};

/// A header and its payload as one gather list.
struct out_frame {
  std::array<std::byte, protocol::frame_header_size> header{};
  std::span<const std::byte> payload;
  out_frame(protocol::frame_type t, std::span<const std::byte> p) noexcept
      : header(protocol::encode_frame_header(t, static_cast<std::uint32_t>(p.size()))), payload(p) {}
  std::size_t size() const noexcept { return header.size() + payload.size(); }
};

// -------------------------------------------------- flushes and receipts

/// A writer's flushes. Each flush frame gets a ticket, in order; it is
/// answered by the peer's ticket-th acknowledgement, or (remote peers) by
/// a consumed frame at or past the flush frame's position in our stream.
class flush_tracker {
public:
  std::uint64_t issue() noexcept { return ++issued_; }
  void acked() noexcept { ++acked_; }
  /// A consumed frame; true when it moved on.
  bool consumed(std::uint64_t offset) noexcept {
    if (offset <= consumed_) return false;
    consumed_ = offset;
    return true;
  }
  /// `pos`: the length of our stream before the ticket's flush frame, once it went out.
  bool answered(std::uint64_t ticket, std::optional<std::uint64_t> pos) const noexcept {
    return acked_ >= ticket || (pos && consumed_ >= *pos);
  }

private:
  std::uint64_t issued_ = 0, acked_ = 0, consumed_ = 0;
};

/// When an end tells a remote peer how much of its stream the application
/// has consumed (a consumed frame): over a network nothing else tells the
/// peer's flush that its bytes were read. Once the application has taken
/// data and everything received is consumed; only data calls for one, so
/// two ends never trade receipts for receipts.
class receipts {
public:
  void data_taken() noexcept { taken_ = true; }
  /// The offset to report, if one is due. `caught_up`: nothing received is
  /// left unconsumed; `received`: the peer's stream taken so far.
  std::optional<std::uint64_t> due(bool remote, bool caught_up, std::uint64_t received) const noexcept {
    if (!remote || !taken_ || !caught_up || received <= sent_) return std::nullopt;
    return received;
  }
  /// A receipt for `offset` is on its way.
  void sent(std::uint64_t offset) noexcept {
    sent_ = std::max(sent_, offset);
    taken_ = false;
  }

private:
  bool taken_ = false;
  std::uint64_t sent_ = 0;
};

} // namespace npipe::detail::framing
