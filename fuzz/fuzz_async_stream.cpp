// SPDX-License-Identifier: MIT
// Fuzz target: the async pipe end's receive path (its inbox, partial reads
// and message growth over the frame engine) fed arbitrary bytes in arbitrary
// pieces through a real socket pair. Receives and partial reads must never crash, hang,
// deliver a message over the limit, or hand out more bytes than arrived.
#include "runtime/async_pipe.hpp"

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(io_context.hpp)
#include NPIPE_NET_HEADER(post.hpp)

#include <cstdint>
#include <cstdlib>
#include <sys/socket.h>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace npipe::detail;
  namespace net = npipe::net;
  if (size < 2) return 0;
  const std::uint8_t mode = data[0];
  data += 1;
  size -= 1;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;

  net::io_context ctx;
  auto pipe = async_pipe::create(ctx.get_executor());
  connection_params p;
  p.name = npipe::pipe_name("fuzz");
  p.type = (mode & 1) ? npipe::pipe_type::message : npipe::pipe_type::byte;
  p.mode = (mode & 3) == 3 ? npipe::read_mode::message : npipe::read_mode::byte;
  p.max_message = 4096u << (mode >> 5); // 4 KiB .. 512 KiB
  // A whole message is at most the limit; a byte-mode receive at most 64 KiB.
  const std::size_t most = p.mode == npipe::read_mode::message ? p.max_message : std::size_t(64) << 10;
  net::post(pipe->strand(), [&, params = std::move(p)]() mutable {
    std::error_code ec;
    pipe->adopt(sv[0], std::move(params), ec);
  });

  std::size_t delivered = 0;
  bool done = false;
  int ops = 0;
  std::vector<std::byte> buf(1 + ((mode >> 2) & 7) * 300);
  std::function<void()> next = [&] {
    if (++ops % 3 == 0) {
      pipe->read_some(net::buffer(buf), npipe::forever, {}, [&](std::error_code ec, npipe::read_result r) {
        if (r.bytes > buf.size()) std::abort();
        delivered += r.bytes;
        if (ec) done = true;
        else next();
      });
    } else {
      pipe->receive(npipe::forever, {}, [&](std::error_code ec, std::vector<std::byte> m) {
        if (m.size() > most) std::abort(); // over the limit
        delivered += m.size();
        if (ec) done = true;
        else next();
      });
    }
  };
  net::post(pipe->strand(), next);

  // Feed the input in pieces whose sizes come from the input, letting the
  // runtime see each piece before the next arrives.
  for (std::size_t pos = 0; pos < size;) {
    std::size_t piece = std::min<std::size_t>(1 + data[pos] % 200, size - pos);
    if (::send(sv[1], data + pos, piece, MSG_NOSIGNAL) != static_cast<ssize_t>(piece)) break;
    pos += piece;
    ctx.poll();
  }
  ::shutdown(sv[1], SHUT_WR);
  for (int i = 0; i < 10000 && !done; ++i) ctx.run_one_for(std::chrono::milliseconds(100));
  if (!done) std::abort(); // the end of the stream must end the reads: a hang is a bug
  if (delivered > size) std::abort(); // invented payload
  net::post(pipe->strand(), [&] { pipe->close(); });
  ctx.poll();
  ::close(sv[1]);
  return 0;
}
