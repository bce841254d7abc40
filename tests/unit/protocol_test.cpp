// SPDX-License-Identifier: MIT
#include "core/protocol.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace proto = npipe::detail::protocol;
using proto::decode_status;

namespace {

std::span<const std::byte> as_span(const std::string& s) { return std::as_bytes(std::span(s)); }

TEST(Protocol, HelloRoundTrip) {
  proto::hello h;
  h.wait_ms = 1234;
  h.max_message = 1 << 20;
  h.name = "TPipe";
  auto wire = proto::encode_hello(h);
  ASSERT_EQ(wire.size(), proto::hello_fixed_size + 5);
  EXPECT_EQ(wire.substr(0, 4), "NPIP");
  proto::hello out;
  std::size_t used = 0;
  std::error_code ec;
  ASSERT_EQ(proto::decode_hello(as_span(wire), out, used, ec), decode_status::done);
  EXPECT_EQ(used, wire.size());
  EXPECT_EQ(out.name, "TPipe");
  EXPECT_EQ(out.wait_ms, 1234u);
  EXPECT_EQ(out.max_message, 1u << 20);
  EXPECT_EQ(out.version, proto::version);
}

TEST(Protocol, HelloNeedsMoreUntilComplete) {
  proto::hello h;
  h.name = "abc";
  auto wire = proto::encode_hello(h);
  for (std::size_t n = 0; n < wire.size(); ++n) {
    proto::hello out;
    std::size_t used = 0;
    std::error_code ec;
    EXPECT_EQ(proto::decode_hello(as_span(wire).first(n), out, used, ec), decode_status::need_more) << n;
    EXPECT_FALSE(ec);
  }
}

TEST(Protocol, HelloRejectsGarbageEarly) {
  proto::hello out;
  std::size_t used = 0;
  std::error_code ec;
  std::string junk = "GET / HTTP/1.1\r\n";
  EXPECT_EQ(proto::decode_hello(as_span(junk).first(1), out, used, ec), decode_status::error)
      << "the first wrong byte is enough";
  EXPECT_EQ(ec, npipe::errc::protocol_error);
}

TEST(Protocol, HelloRejectsBadNameLengths) {
  proto::hello h;
  h.name = "x";
  auto wire = proto::encode_hello(h);
  proto::hello out;
  std::size_t used = 0;
  std::error_code ec;
  wire[6] = 0; // name length 0
  EXPECT_EQ(proto::decode_hello(as_span(wire), out, used, ec), decode_status::error);
  wire[6] = static_cast<char>(0xff);
  wire[7] = static_cast<char>(0xff); // 65535 > 1024
  EXPECT_EQ(proto::decode_hello(as_span(wire), out, used, ec), decode_status::error);
  wire = proto::encode_hello(h);
  wire[5] = 2; // an unknown flag
  EXPECT_EQ(proto::decode_hello(as_span(wire), out, used, ec), decode_status::error);
}

TEST(Protocol, ForwardedHelloCarriesTheRemotePeerAndNeedsEveryByte) {
  proto::hello h;
  h.name = "tpipe";
  h.wait_ms = 5;
  h.forwarded = true;
  h.remote_user = "CN=client one,O=npipe test";
  h.remote_address = "[::1]:50123";
  auto wire = proto::encode_hello(h);
  ASSERT_EQ(wire.size(), proto::hello_fixed_size + 5 + 3 + h.remote_user.size() + h.remote_address.size());
  for (std::size_t n = 0; n < wire.size(); ++n) {
    proto::hello out;
    std::size_t used = 0;
    std::error_code ec;
    EXPECT_EQ(proto::decode_hello(as_span(wire).first(n), out, used, ec), decode_status::need_more) << n;
  }
  proto::hello out;
  std::size_t used = 0;
  std::error_code ec;
  ASSERT_EQ(proto::decode_hello(as_span(wire + "extra"), out, used, ec), decode_status::done);
  EXPECT_EQ(used, wire.size());
  EXPECT_TRUE(out.forwarded);
  EXPECT_EQ(out.name, "tpipe");
  EXPECT_EQ(out.remote_user, h.remote_user);
  EXPECT_EQ(out.remote_address, h.remote_address);

  // Empty or oversized identity fields are refused from their length alone.
  auto bad = wire;
  std::size_t at = proto::hello_fixed_size + 5;
  bad[at] = 0;
  bad[at + 1] = 0; // user length 0
  EXPECT_EQ(proto::decode_hello(as_span(bad), out, used, ec), decode_status::error);
  bad[at] = 0x01;
  bad[at + 1] = 0x04; // 1025 > 1024
  EXPECT_EQ(proto::decode_hello(as_span(bad).first(at + 2), out, used, ec), decode_status::error);
  bad = wire;
  bad[at + 2 + h.remote_user.size()] = 0; // address length 0
  EXPECT_EQ(proto::decode_hello(as_span(bad), out, used, ec), decode_status::error);
}

TEST(Protocol, ReplyRoundTripAndValidation) {
  proto::reply r;
  r.status = proto::status::busy;
  r.type = npipe::pipe_type::byte;
  r.max_message = 77;
  auto wire = proto::encode_reply(r);
  proto::reply out;
  std::error_code ec;
  ASSERT_EQ(proto::decode_reply(wire, out, ec), decode_status::done);
  EXPECT_EQ(out.status, proto::status::busy);
  EXPECT_EQ(out.type, npipe::pipe_type::byte);
  EXPECT_EQ(out.max_message, 77u);
  EXPECT_EQ(proto::decode_reply(std::span(wire).first(15), out, ec), decode_status::need_more);
  wire[5] = std::byte{99};
  EXPECT_EQ(proto::decode_reply(wire, out, ec), decode_status::error);
  EXPECT_EQ(proto::status_error(proto::status::busy), npipe::errc::pipe_busy);
  EXPECT_EQ(proto::status_error(proto::status::access_denied), npipe::errc::access_denied);
  EXPECT_EQ(proto::status_error(proto::status::bad_version), npipe::errc::protocol_error);
}

TEST(Protocol, FrameHeaders) {
  auto h = proto::encode_frame_header(proto::frame_type::data, 0x01020304);
  proto::frame_header out;
  std::error_code ec;
  ASSERT_EQ(proto::decode_frame_header(h, 1u << 30, out, ec), decode_status::done);
  EXPECT_EQ(out.type, proto::frame_type::data);
  EXPECT_EQ(out.length, 0x01020304u);
  EXPECT_EQ(proto::decode_frame_header(std::span(h).first(4), 100, out, ec), decode_status::need_more);
}

TEST(Protocol, OversizeLengthRejectedBeforeAllocation) {
  auto h = proto::encode_frame_header(proto::frame_type::data, 0xFFFFFFFFu);
  proto::frame_header out;
  std::error_code ec;
  EXPECT_EQ(proto::decode_frame_header(h, 32u << 20, out, ec), decode_status::error);
  EXPECT_EQ(ec, npipe::errc::message_too_large);
  h = proto::encode_frame_header(proto::frame_type::data, 101);
  EXPECT_EQ(proto::decode_frame_header(h, 100, out, ec), decode_status::error);
  h = proto::encode_frame_header(proto::frame_type::data, 100);
  EXPECT_EQ(proto::decode_frame_header(h, 100, out, ec), decode_status::done) << "the limit itself is allowed";
}

TEST(Protocol, BadFrameTypesAndControlLengths) {
  proto::frame_header out;
  std::error_code ec;
  for (int t : {0, 5, 0x7f, 0xff}) {
    auto h = proto::encode_frame_header(static_cast<proto::frame_type>(t), 0);
    EXPECT_EQ(proto::decode_frame_header(h, 100, out, ec), decode_status::error) << t;
    EXPECT_EQ(ec, npipe::errc::protocol_error);
  }
  auto h = proto::encode_frame_header(proto::frame_type::flush, 1);
  EXPECT_EQ(proto::decode_frame_header(h, 100, out, ec), decode_status::error) << "flush frames carry nothing";
  for (std::uint32_t len : {0u, 7u, 9u}) {
    h = proto::encode_frame_header(proto::frame_type::consumed, len);
    EXPECT_EQ(proto::decode_frame_header(h, 100, out, ec), decode_status::error) << "consumed carries 8 bytes, not " << len;
  }
}

TEST(Protocol, ConsumedFramesRoundTripEveryOffset) {
  for (std::uint64_t off : {0ull, 1ull, 0xFFFFFFFFull, 0x100000000ull, 0x0123456789ABCDEFull}) {
    auto f = proto::encode_consumed(off);
    proto::frame_header h;
    std::error_code ec;
    ASSERT_EQ(proto::decode_frame_header(f, 16, h, ec), decode_status::done);
    EXPECT_EQ(h.type, proto::frame_type::consumed);
    EXPECT_EQ(h.length, proto::consumed_payload);
    EXPECT_EQ(proto::decode_consumed(std::span<const std::byte, proto::consumed_payload>(f.data() + 5, 8)), off);
  }
}

TEST(Protocol, TheNewStatusesMeanPipeBusy) {
  EXPECT_EQ(proto::status_error(proto::status::overloaded), npipe::errc::pipe_busy);
  EXPECT_EQ(proto::status_error(proto::status::wait_queue_full), npipe::errc::pipe_busy);
  proto::reply r;
  r.status = proto::status::wait_queue_full;
  auto wire = proto::encode_reply(r);
  proto::reply out;
  std::error_code ec;
  EXPECT_EQ(proto::decode_reply(wire, out, ec), decode_status::done);
  wire[5] = std::byte{11};
  EXPECT_EQ(proto::decode_reply(wire, out, ec), decode_status::error) << "no status past the last";
}

} // namespace
