// SPDX-License-Identifier: MIT
#pragma once
// A non-blocking, reliable byte stream (a Unix socket, a TCP socket, a TLS
// session): what framed_connection needs to carry npipe frames.

#include "transport/transport.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>

namespace npipe::detail {

enum class io_status { ok, would_block, eof, error };

struct io_result {
  std::size_t bytes = 0;
  io_status status = io_status::ok;
};

class byte_stream {
public:
  virtual ~byte_stream() = default;
  /// Read what is there without blocking.
  virtual io_result read_some(std::span<std::byte> buf, std::error_code& ec) noexcept = 0;
  /// Write (gathered) without blocking and without raising SIGPIPE.
  virtual io_result write_some(std::span<const std::span<const std::byte>> bufs, std::error_code& ec) noexcept = 0;
  /// Read, sleeping until something arrives (never would_block). The default
  /// waits, then reads; a blocking socket does it in one system call.
  virtual io_result read_wait(std::span<std::byte> buf, std::error_code& ec) noexcept {
    for (;;) {
      auto r = read_some(buf, ec);
      if (r.status != io_status::would_block) return r;
      if (!wait(false, deadline{}, ec)) return {0, io_status::error};
    }
  }
  /// Write, sleeping until at least some is taken (never would_block).
  virtual io_result write_wait(std::span<const std::span<const std::byte>> bufs, std::error_code& ec) noexcept {
    for (;;) {
      auto r = write_some(bufs, ec);
      if (r.status != io_status::would_block) return r;
      if (!wait(true, deadline{}, ec)) return {0, io_status::error};
    }
  }
  /// Wait until readable (or writable). False on timeout; errors in ec.
  virtual bool wait(bool for_write, deadline dl, std::error_code& ec) noexcept = 0;
  /// Wake any waiter and make the peer see the end of the stream.
  virtual void shutdown() noexcept = 0;
  /// True if the peer process has taken every byte written so far off the
  /// stream (not merely its kernel or network). False when unknown.
  virtual bool peer_took_everything() noexcept { return false; }
  /// True if the peer's end of stream means it has gone (TCP, TLS, a
  /// gateway's relay), so a write after it must fail at once; false for a
  /// local peer, which may have shut down only its sending side and still
  /// read (the kernel fails a write to a peer that really closed).
  virtual bool end_means_gone() const noexcept { return true; }
  /// The descriptor a caller may wait on for readability (see
  /// connection_impl::native_handle), or -1 where there is none.
  virtual std::intptr_t native_handle() const noexcept = 0;
};

} // namespace npipe::detail
