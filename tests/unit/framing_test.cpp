// SPDX-License-Identifier: MIT
// The frame engine (src/core/framing.hpp): the reader over every way a
// stream can be cut into reads, the writer's rules, flushes and receipts.
#include "core/framing.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace npipe::detail;
using framing::event;

namespace {

std::vector<std::byte> bytes(const std::string& s) {
  std::vector<std::byte> v(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) v[i] = static_cast<std::byte>(s[i]);
  return v;
}

void append(std::vector<std::byte>& out, protocol::frame_type t, const std::string& payload = {}) {
  auto h = protocol::encode_frame_header(t, static_cast<std::uint32_t>(payload.size()));
  out.insert(out.end(), h.begin(), h.end());
  auto p = bytes(payload);
  out.insert(out.end(), p.begin(), p.end());
}

void append_consumed(std::vector<std::byte>& out, std::uint64_t offset) {
  auto f = protocol::encode_consumed(offset);
  out.insert(out.end(), f.begin(), f.end());
}

// What a reader reports over `in` fed in pieces of `piece` bytes, as text:
// "D<at>:<payload>" for a message, "F<at>", "A<at>", "C<at>=<offset>", "E".
std::string run(const std::vector<std::byte>& in, std::size_t piece, std::size_t max = 1024) {
  framing::reader r(max);
  std::string out, msg;
  std::uint64_t msg_at = 0;
  std::size_t pos = 0;
  while (pos < in.size()) {
    std::size_t end = std::min(in.size(), pos + piece);
    while (pos < end) {
      if (r.in_data()) {
        std::size_t n = std::min<std::size_t>(r.left(), end - pos);
        for (std::size_t i = 0; i < n; ++i) msg += static_cast<char>(in[pos + i]);
        r.took(n);
        pos += n;
        if (r.left() == 0) {
          out += "D" + std::to_string(msg_at) + ":" + msg + " ";
          msg.clear();
          r.end_data();
        }
        continue;
      }
      auto s = r.next(std::span(in.data() + pos, end - pos));
      EXPECT_LE(s.used, end - pos);
      pos += s.used;
      switch (s.what) {
      case event::need_more: EXPECT_EQ(pos, end); break;
      case event::data:
        msg_at = s.at;
        if (s.length == 0) {
          out += "D" + std::to_string(s.at) + ": ";
          r.end_data();
        }
        break;
      case event::flush: out += "F" + std::to_string(s.at) + " "; break;
      case event::flush_ack: out += "A" + std::to_string(s.at) + " "; break;
      case event::consumed: out += "C" + std::to_string(s.at) + "=" + std::to_string(s.consumed) + " "; break;
      case event::error: return out + "E";
      }
    }
    EXPECT_EQ(r.offset(), pos) << "the reader's offset is what it was given";
  }
  if (r.mid_frame()) out += "cut";
  return out;
}

std::vector<std::byte> sample() {
  std::vector<std::byte> in;
  append(in, protocol::frame_type::data, "hello");          // 0..10
  append(in, protocol::frame_type::flush);                  // 10..15
  append_consumed(in, 0x1122334455ull);                     // 15..28
  append(in, protocol::frame_type::data);                   // 28..33: an empty message
  append(in, protocol::frame_type::flush_ack);              // 33..38
  append(in, protocol::frame_type::data, std::string(40, 'x')); // 38..83
  return in;
}

} // namespace

TEST(FrameReader, ReportsTheSameFramesHoweverTheStreamIsCut) {
  auto in = sample();
  const std::string whole = run(in, in.size());
  EXPECT_EQ(whole, "D0:hello F10 C15=73588229205 D28: A33 D38:" + std::string(40, 'x') + " ");
  for (std::size_t piece = 1; piece < in.size(); ++piece) EXPECT_EQ(run(in, piece), whole) << "pieces of " << piece;
}

TEST(FrameReader, AStreamThatEndsInsideAFrameIsReportedAsCut) {
  auto in = sample();
  for (std::size_t cut : {1u, 4u, 7u, 12u, 20u, 27u, 50u}) {
    std::vector<std::byte> part(in.begin(), in.begin() + cut);
    for (std::size_t piece = 1; piece <= cut; ++piece)
      EXPECT_NE(run(part, piece).find("cut"), std::string::npos) << "cut at " << cut << ", pieces of " << piece;
  }
  std::vector<std::byte> part(in.begin(), in.begin() + 28); // a frame boundary
  EXPECT_EQ(run(part, 3).find("cut"), std::string::npos);
}

TEST(FrameReader, AnOverLimitHeaderIsAnErrorNamingItsLengthAndTheLimit) {
  std::vector<std::byte> in;
  append(in, protocol::frame_type::data, "ok");
  auto h = protocol::encode_frame_header(protocol::frame_type::data, 33554432);
  in.insert(in.end(), h.begin(), h.end());
  for (std::size_t piece = 1; piece <= in.size(); ++piece) EXPECT_EQ(run(in, piece, 4096), "D0:ok E");
  framing::reader r(4096);
  auto s = r.next(std::span(in).subspan(7));
  EXPECT_EQ(s.what, event::error);
  EXPECT_EQ(r.error(), npipe::errc::message_too_large);
  EXPECT_EQ(r.error_detail(),
            "the peer sent a 33554432-byte frame header over this end's limit of 4096 bytes; the connection is closed");
  EXPECT_EQ(r.next(std::span(in)).what, event::error) << "an error is for good";
}

TEST(FrameReader, AnUnknownTypeOrAControlFrameWithTheWrongLengthIsAnError) {
  for (auto bad : {std::vector<std::byte>{std::byte{9}, {}, {}, {}, {}},
                   std::vector<std::byte>{std::byte{2}, std::byte{1}, {}, {}, {}, std::byte{0}},
                   std::vector<std::byte>{std::byte{4}, std::byte{7}, {}, {}, {}}}) {
    framing::reader r;
    EXPECT_EQ(r.next(bad).what, event::error);
    EXPECT_EQ(r.error(), npipe::errc::protocol_error);
    EXPECT_EQ(r.error_detail(), "the peer sent a malformed frame; the connection is closed");
  }
}

TEST(FrameReader, StopAtDataTakesTheHeaderButEntersThePayloadOnlyWhenAsked) {
  std::vector<std::byte> in;
  append(in, protocol::frame_type::flush_ack);
  append(in, protocol::frame_type::data, "abc");
  framing::reader r;
  EXPECT_EQ(r.next(in, true).what, event::flush_ack);
  auto s = r.next(std::span(in).subspan(5), true);
  EXPECT_EQ(s.what, event::data);
  EXPECT_EQ(s.used, 5u);
  EXPECT_TRUE(r.data_ahead());
  EXPECT_TRUE(r.holds_data_start());
  EXPECT_FALSE(r.in_data());
  EXPECT_EQ(r.next(std::span(in).subspan(10), true).used, 0u) << "still ahead";
  s = r.next(std::span(in).subspan(10));
  EXPECT_EQ(s.what, event::data);
  EXPECT_EQ(s.used, 0u);
  EXPECT_TRUE(r.in_data());
  EXPECT_EQ(r.left(), 3u);
}

TEST(FrameReader, APartialDataHeaderIsTheStartOfAMessage) {
  std::vector<std::byte> in;
  append(in, protocol::frame_type::data, "abc");
  framing::reader r;
  EXPECT_EQ(r.next(std::span(in).first(2)).what, event::need_more);
  EXPECT_TRUE(r.holds_data_start());
  framing::reader c;
  std::vector<std::byte> ack;
  append(ack, protocol::frame_type::flush_ack);
  EXPECT_EQ(c.next(std::span(ack).first(2)).what, event::need_more);
  EXPECT_FALSE(c.holds_data_start());
  EXPECT_TRUE(c.mid_frame());
}

TEST(FrameWriter, AMessageOverThePeersLimitIsRefusedWholeAndBytePipesAreCut) {
  std::string detail;
  EXPECT_FALSE(framing::check_send(npipe::pipe_type::message, 4096, 4096, detail));
  EXPECT_EQ(framing::check_send(npipe::pipe_type::message, 4097, 4096, detail), npipe::errc::message_too_large);
  EXPECT_EQ(detail, "a 4097-byte message exceeds the peer's limit of 4096 bytes; nothing was sent");
  EXPECT_FALSE(framing::check_send(npipe::pipe_type::byte, 1u << 30, 4096, detail));

  std::vector<std::byte> data(10000);
  auto count = [&](npipe::pipe_type t, std::span<const std::byte> d, std::size_t limit, std::vector<std::size_t>& sizes) {
    framing::frame_cuts cuts(t, d, limit);
    std::span<const std::byte> part;
    while (cuts.next(part)) sizes.push_back(part.size());
  };
  std::vector<std::size_t> m, e, b, empty;
  count(npipe::pipe_type::message, data, 65536, m);
  count(npipe::pipe_type::message, {}, 65536, e);
  count(npipe::pipe_type::byte, data, 4096, b);
  count(npipe::pipe_type::byte, {}, 4096, empty);
  EXPECT_EQ(m, std::vector<std::size_t>{10000});
  EXPECT_EQ(e, std::vector<std::size_t>{0}) << "an empty message is a frame";
  EXPECT_EQ(b, (std::vector<std::size_t>{4096, 4096, 1808}));
  EXPECT_TRUE(empty.empty()) << "no bytes, no frame";
  EXPECT_EQ(framing::byte_frame_size(16), framing::min_receive_limit);
  EXPECT_EQ(framing::byte_frame_size(std::size_t(1) << 30), framing::byte_chunk);
}

TEST(FrameMemory, AMessagesRoomGrowsWithWhatArrivedNotWithItsHeader) {
  const std::size_t total = 32u << 20;
  EXPECT_EQ(framing::room_for(0, total), framing::first_step);
  EXPECT_EQ(framing::room_for(1, total), framing::first_step);
  EXPECT_EQ(framing::room_for(1u << 20, total), 2u << 20);
  EXPECT_EQ(framing::room_for(total / 2 + 1, total), total);
  EXPECT_EQ(framing::room_for(0, 100), 100u);
}

TEST(Flushes, AFlushIsAnsweredByItsAcknowledgementOrByAReceiptPastIt) {
  framing::flush_tracker f;
  auto a = f.issue(), b = f.issue();
  EXPECT_FALSE(f.answered(a, std::nullopt));
  f.acked();
  EXPECT_TRUE(f.answered(a, std::nullopt));
  EXPECT_FALSE(f.answered(b, 100));
  EXPECT_TRUE(f.consumed(99));
  EXPECT_FALSE(f.answered(b, 100));
  EXPECT_FALSE(f.consumed(50)) << "a receipt never goes back";
  EXPECT_TRUE(f.consumed(100));
  EXPECT_TRUE(f.answered(b, 100));
  EXPECT_FALSE(f.answered(b + 1, std::nullopt)) << "an unwritten flush has no position a receipt could pass";
}

TEST(Receipts, OnlyDataTakenByTheApplicationCallsForOneAndOnlyToARemotePeer) {
  framing::receipts r;
  EXPECT_FALSE(r.due(true, true, 10)) << "nothing taken yet";
  r.data_taken();
  EXPECT_FALSE(r.due(false, true, 10)) << "local peers learn from the kernel";
  EXPECT_FALSE(r.due(true, false, 10)) << "not caught up";
  ASSERT_TRUE(r.due(true, true, 10));
  EXPECT_EQ(*r.due(true, true, 10), 10u);
  r.sent(10);
  EXPECT_FALSE(r.due(true, true, 23)) << "a receipt from the peer is not data";
  r.data_taken();
  EXPECT_EQ(*r.due(true, true, 23), 23u);
}
