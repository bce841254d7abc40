// SPDX-License-Identifier: MIT
#pragma once
// npipe's wire protocol: handshake and frames (docs/protocol.md). Pure code,
// no I/O, so it can be unit-tested and fuzzed.

#include <npipe/error.hpp>
#include <npipe/options.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>

namespace npipe::detail::protocol {

inline constexpr std::array<std::byte, 4> magic{std::byte{'N'}, std::byte{'P'}, std::byte{'I'}, std::byte{'P'}};
inline constexpr std::uint8_t version = 1;
inline constexpr std::size_t hello_fixed_size = 16;
inline constexpr std::size_t max_name_bytes = 1024; // 256 UTF-8 characters of at most 4 bytes
inline constexpr std::size_t reply_size = 16;
inline constexpr std::size_t frame_header_size = 5;
inline constexpr std::uint32_t wait_forever = 0xFFFFFFFFu;

/// Client's first bytes.
struct hello {
  std::uint8_t version = protocol::version;
  std::uint32_t wait_ms = 0;        ///< how long to wait for a busy pipe; wait_forever = no limit
  std::uint32_t max_message = 0;    ///< the client's receive limit
  std::string name;                 ///< NAME part of the pipe name (UTF-8)
  /// Flag 0x01, set only by a gateway relaying a remote client: who the
  /// remote peer is (TLS certificate subject or "psk:IDENTITY") and where it
  /// connects from. Servers accept it only from their own user or root, and
  /// only when they accept remote clients.
  bool forwarded = false;
  std::string remote_user;          ///< 1..max_remote_user_bytes
  std::string remote_address;       ///< 1..max_remote_address_bytes
};
inline constexpr std::uint8_t flag_forwarded = 0x01;
inline constexpr std::size_t max_remote_user_bytes = 1024;
inline constexpr std::size_t max_remote_address_bytes = 255;

enum class status : std::uint8_t {
  ok = 0,
  busy = 1,
  not_found = 2,
  access_denied = 3,
  bad_version = 4,
  protocol_error = 5,
  shutting_down = 6,
  user_limit = 7, ///< this user has as many connections as the server allows one user
  tls_required = 8, ///< a plaintext hello reached a gateway that speaks only TLS
  overloaded = 9,   ///< too many connections are still in their handshake; this one was let go
  wait_queue_full = 10, ///< every instance is busy and as many clients as the server allows are waiting
};
inline constexpr status last_status = status::wait_queue_full;

/// Server's answer to a hello.
struct reply {
  std::uint8_t version = protocol::version;
  protocol::status status = status::ok;
  pipe_type type = pipe_type::message;
  std::uint32_t max_message = 0;    ///< the server's receive limit
};

enum class frame_type : std::uint8_t {
  data = 1,      ///< payload: one message (message pipe) or a chunk of bytes (byte pipe)
  flush = 2,     ///< "tell me when you have read everything before this"
  flush_ack = 3, ///< answer to flush
  consumed = 4,  ///< payload: 8 bytes, how much of the peer's stream this end's application has consumed
};
/// The payload length of a consumed frame.
inline constexpr std::size_t consumed_payload = 8;
/// A consumed frame: "my application has consumed the first `offset` bytes
/// of your stream" (frames as sent, counted from the end of the handshake).
std::array<std::byte, frame_header_size + consumed_payload> encode_consumed(std::uint64_t offset) noexcept;
std::uint64_t decode_consumed(std::span<const std::byte, consumed_payload> payload) noexcept;

struct frame_header {
  frame_type type = frame_type::data;
  std::uint32_t length = 0;
};

enum class decode_status { done, need_more, error };

/// Encode a hello. Preconditions: name.size() <= max_name_bytes; when
/// forwarded, both remote fields within their limits.
std::string encode_hello(const hello& h);
/// Decode a hello from the start of `in`. On done, `consumed` is its size.
decode_status decode_hello(std::span<const std::byte> in, hello& out, std::size_t& consumed, std::error_code& ec);

std::array<std::byte, reply_size> encode_reply(const reply& r) noexcept;
decode_status decode_reply(std::span<const std::byte> in, reply& out, std::error_code& ec) noexcept;

std::array<std::byte, frame_header_size> encode_frame_header(frame_type t, std::uint32_t length) noexcept;
/// Decode a frame header; checks the type and that data frames do not exceed
/// `max_length` (errc::message_too_large) before anyone allocates.
decode_status decode_frame_header(std::span<const std::byte> in, std::size_t max_length, frame_header& out,
                                  std::error_code& ec) noexcept;

/// The error a client reports for a non-ok reply status.
std::error_code status_error(status s) noexcept;

} // namespace npipe::detail::protocol
