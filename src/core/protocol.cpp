// SPDX-License-Identifier: MIT
#include "core/protocol.hpp"

#include <cstring>

namespace npipe::detail::protocol {
namespace {

void put32(std::byte* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
void put16(std::byte* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::byte>(v);
  p[1] = static_cast<std::byte>(v >> 8);
}
std::uint32_t get32(const std::byte* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::to_integer<std::uint32_t>(p[i]) << (8 * i);
  return v;
}
std::uint16_t get16(const std::byte* p) noexcept {
  return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) | (std::to_integer<unsigned>(p[1]) << 8));
}

decode_status fail(std::error_code& ec, errc e) noexcept {
  ec = make_error_code(e);
  return decode_status::error;
}

} // namespace

std::string encode_hello(const hello& h) {
  std::size_t extra = h.forwarded ? 3 + h.remote_user.size() + h.remote_address.size() : 0;
  std::string out(hello_fixed_size + h.name.size() + extra, '\0');
  auto* p = reinterpret_cast<std::byte*>(out.data());
  std::memcpy(p, magic.data(), magic.size());
  p[4] = static_cast<std::byte>(h.version);
  p[5] = std::byte{h.forwarded ? flag_forwarded : std::uint8_t{0}};
  put16(p + 6, static_cast<std::uint16_t>(h.name.size()));
  put32(p + 8, h.wait_ms);
  put32(p + 12, h.max_message);
  p += hello_fixed_size;
  std::memcpy(p, h.name.data(), h.name.size());
  p += h.name.size();
  if (h.forwarded) {
    put16(p, static_cast<std::uint16_t>(h.remote_user.size()));
    std::memcpy(p + 2, h.remote_user.data(), h.remote_user.size());
    p += 2 + h.remote_user.size();
    *p = static_cast<std::byte>(h.remote_address.size());
    std::memcpy(p + 1, h.remote_address.data(), h.remote_address.size());
  }
  return out;
}

decode_status decode_hello(std::span<const std::byte> in, hello& out, std::size_t& consumed, std::error_code& ec) {
  ec.clear();
  // Judge the magic as soon as its bytes are here, so garbage fails fast.
  if (!in.empty() && std::memcmp(in.data(), magic.data(), std::min(in.size(), magic.size())) != 0)
    return fail(ec, errc::protocol_error);
  if (in.size() < hello_fixed_size) return decode_status::need_more;
  auto flags = std::to_integer<std::uint8_t>(in[5]);
  if ((flags & ~flag_forwarded) != 0) return fail(ec, errc::protocol_error);
  std::size_t name_len = get16(in.data() + 6);
  if (name_len == 0 || name_len > max_name_bytes) return fail(ec, errc::protocol_error);
  std::size_t end = hello_fixed_size + name_len;
  if (in.size() < end) return decode_status::need_more;
  std::size_t user_len = 0, addr_len = 0;
  if (flags & flag_forwarded) {
    if (in.size() < end + 2) return decode_status::need_more;
    user_len = get16(in.data() + end);
    if (user_len == 0 || user_len > max_remote_user_bytes) return fail(ec, errc::protocol_error);
    if (in.size() < end + 2 + user_len + 1) return decode_status::need_more;
    addr_len = std::to_integer<std::size_t>(in[end + 2 + user_len]);
    if (addr_len == 0) return fail(ec, errc::protocol_error);
    if (in.size() < end + 3 + user_len + addr_len) return decode_status::need_more;
  }
  const char* text = reinterpret_cast<const char*>(in.data());
  out.version = std::to_integer<std::uint8_t>(in[4]);
  out.wait_ms = get32(in.data() + 8);
  out.max_message = get32(in.data() + 12);
  out.name.assign(text + hello_fixed_size, name_len);
  out.forwarded = (flags & flag_forwarded) != 0;
  out.remote_user.assign(user_len ? text + end + 2 : text, user_len);
  out.remote_address.assign(addr_len ? text + end + 3 + user_len : text, addr_len);
  consumed = end + (out.forwarded ? 3 + user_len + addr_len : 0);
  return decode_status::done;
}

std::array<std::byte, reply_size> encode_reply(const reply& r) noexcept {
  std::array<std::byte, reply_size> out{};
  std::memcpy(out.data(), magic.data(), magic.size());
  out[4] = static_cast<std::byte>(r.version);
  out[5] = static_cast<std::byte>(r.status);
  out[6] = static_cast<std::byte>(r.type);
  put32(out.data() + 8, r.max_message);
  return out;
}

decode_status decode_reply(std::span<const std::byte> in, reply& out, std::error_code& ec) noexcept {
  ec.clear();
  if (!in.empty() && std::memcmp(in.data(), magic.data(), std::min(in.size(), magic.size())) != 0)
    return fail(ec, errc::protocol_error);
  if (in.size() < reply_size) return decode_status::need_more;
  auto st = std::to_integer<std::uint8_t>(in[5]);
  auto type = std::to_integer<std::uint8_t>(in[6]);
  if (st > static_cast<std::uint8_t>(last_status) || type > 1 || in[7] != std::byte{0})
    return fail(ec, errc::protocol_error);
  out.version = std::to_integer<std::uint8_t>(in[4]);
  out.status = static_cast<status>(st);
  out.type = static_cast<pipe_type>(type);
  out.max_message = get32(in.data() + 8);
  return decode_status::done;
}

std::array<std::byte, frame_header_size> encode_frame_header(frame_type t, std::uint32_t length) noexcept {
  std::array<std::byte, frame_header_size> out{};
  out[0] = static_cast<std::byte>(t);
  put32(out.data() + 1, length);
  return out;
}

decode_status decode_frame_header(std::span<const std::byte> in, std::size_t max_length, frame_header& out,
                                  std::error_code& ec) noexcept {
  ec.clear();
  if (in.size() < frame_header_size) return decode_status::need_more;
  auto t = std::to_integer<std::uint8_t>(in[0]);
  std::uint32_t len = get32(in.data() + 1);
  switch (static_cast<frame_type>(t)) {
  case frame_type::data:
    if (len > max_length) return fail(ec, errc::message_too_large);
    break;
  case frame_type::flush:
  case frame_type::flush_ack:
    if (len != 0) return fail(ec, errc::protocol_error);
    break;
  case frame_type::consumed:
    if (len != consumed_payload) return fail(ec, errc::protocol_error);
    break;
  default:
    return fail(ec, errc::protocol_error);
  }
  out.type = static_cast<frame_type>(t);
  out.length = len;
  return decode_status::done;
}

std::array<std::byte, frame_header_size + consumed_payload> encode_consumed(std::uint64_t offset) noexcept {
  std::array<std::byte, frame_header_size + consumed_payload> out{};
  auto h = encode_frame_header(frame_type::consumed, consumed_payload);
  std::memcpy(out.data(), h.data(), h.size());
  put32(out.data() + frame_header_size, static_cast<std::uint32_t>(offset));
  put32(out.data() + frame_header_size + 4, static_cast<std::uint32_t>(offset >> 32));
  return out;
}

std::uint64_t decode_consumed(std::span<const std::byte, consumed_payload> payload) noexcept {
  return get32(payload.data()) | (static_cast<std::uint64_t>(get32(payload.data() + 4)) << 32);
}

std::error_code status_error(status s) noexcept {
  switch (s) {
  case status::ok: return {};
  case status::busy: return make_error_code(errc::pipe_busy);
  case status::not_found: return make_error_code(errc::not_found);
  case status::access_denied: return make_error_code(errc::access_denied);
  case status::shutting_down: return make_error_code(errc::not_found);
  case status::user_limit: return make_error_code(errc::pipe_busy);
  case status::tls_required: return make_error_code(errc::access_denied);
  case status::overloaded: return make_error_code(errc::pipe_busy);
  case status::wait_queue_full: return make_error_code(errc::pipe_busy);
  case status::bad_version:
  case status::protocol_error: break;
  }
  return make_error_code(errc::protocol_error);
}

} // namespace npipe::detail::protocol
