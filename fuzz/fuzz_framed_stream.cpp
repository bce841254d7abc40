// SPDX-License-Identifier: MIT
// Fuzz target: a connection whose peer sends arbitrary bytes in arbitrary
// pieces. Reads, receives and peeks must never crash, hang, over-allocate,
// or hand out more bytes than arrived.
#include "transport/framed_connection.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

using namespace npipe::detail;

// Serves the input in pieces whose sizes come from the input itself.
class memory_stream final : public byte_stream {
public:
  memory_stream(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  io_result read_some(std::span<std::byte> buf, std::error_code&) noexcept override {
    if (pos_ >= n_) return {0, io_status::eof};
    std::size_t piece = 1 + d_[pos_ % n_] % 64;
    piece = std::min({piece, buf.size(), n_ - pos_});
    std::memcpy(buf.data(), d_ + pos_, piece);
    pos_ += piece;
    delivered_ += piece;
    return {piece, io_status::ok};
  }
  io_result write_some(std::span<const std::span<const std::byte>> bufs, std::error_code&) noexcept override {
    std::size_t n = 0;
    for (auto b : bufs) n += b.size();
    return {n, io_status::ok};
  }
  bool wait(bool, deadline, std::error_code&) noexcept override { return true; }
  void shutdown() noexcept override {}
  std::intptr_t native_handle() const noexcept override { return -1; }
  std::size_t delivered() const { return delivered_; }

private:
  const std::uint8_t* d_;
  std::size_t n_, pos_ = 0, delivered_ = 0;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t mode = data[0];
  auto stream = std::make_unique<memory_stream>(data + 1, size - 1);
  auto* raw = stream.get();
  framed_params p;
  p.name = npipe::pipe_name("fuzz");
  p.type = (mode & 1) ? npipe::pipe_type::message : npipe::pipe_type::byte;
  p.mode = (mode & 3) == 3 ? npipe::read_mode::message : npipe::read_mode::byte;
  p.max_message = 4096u << (mode >> 5); // 4 KiB .. 512 KiB
  framed_connection c(std::move(stream), std::move(p));
  std::vector<std::byte> buf(1 + ((mode >> 2) & 7) * 300);
  std::size_t total = 0;
  for (int i = 0; i < 100000; ++i) {
    std::error_code ec;
    if (i % 7 == 3) {
      auto pk = c.peek(buf, ec);
      if (pk.bytes_read > buf.size()) std::abort();
      continue;
    }
    if (i % 5 == 4) {
      auto m = c.receive(deadline{}, ec);
      if (m.size() > (4096u << (mode >> 5))) std::abort(); // never above the limit
      total += m.size();
    } else {
      auto r = c.read(buf, deadline{}, ec);
      if (r.bytes > buf.size()) std::abort();
      total += r.bytes;
    }
    if (ec) break;
  }
  if (total > raw->delivered()) std::abort(); // never invents payload
  return 0;
}
