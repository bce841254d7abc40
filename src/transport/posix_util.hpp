// SPDX-License-Identifier: MIT
#pragma once
// Small POSIX helpers shared by the Linux transports.

#include "transport/byte_stream.hpp"

#include <npipe/connection.hpp>

#include <string>
#include <system_error>

namespace npipe::detail {

/// An npipe error for errno `e`, keeping `e` as the OS code.
std::error_code errno_error(int e);
std::error_code errno_error(errc as, int e);

/// A byte_stream over a socket fd (owns the fd). The fd may be blocking:
/// read_some and write_some never block (MSG_DONTWAIT), read_wait does.
class fd_stream final : public byte_stream {
public:
  /// `local_peer`: the other end of this socket is the peer application
  /// itself (a Unix socket to it), so SIOCOUTQ = 0 means it has read
  /// everything. False for TCP and for a gateway relaying a remote peer.
  explicit fd_stream(int fd, bool local_peer = true) noexcept : fd_(fd), local_peer_(local_peer) {}
  ~fd_stream() override;
  fd_stream(const fd_stream&) = delete;
  fd_stream& operator=(const fd_stream&) = delete;

  io_result read_some(std::span<std::byte> buf, std::error_code& ec) noexcept override;
  io_result read_wait(std::span<std::byte> buf, std::error_code& ec) noexcept override;
  io_result write_some(std::span<const std::span<const std::byte>> bufs, std::error_code& ec) noexcept override;
  io_result write_wait(std::span<const std::span<const std::byte>> bufs, std::error_code& ec) noexcept override;
  bool wait(bool for_write, deadline dl, std::error_code& ec) noexcept override;
  void shutdown() noexcept override;
  bool peer_took_everything() noexcept override;
  bool end_means_gone() const noexcept override { return !local_peer_; }
  int fd() const noexcept { return fd_; }
  std::intptr_t native_handle() const noexcept override { return fd_; }

private:
  int fd_;
  bool local_peer_;
};

/// True if the peer process has read every byte written to this Unix
/// socket (SIOCOUTQ is 0): what makes a flush complete at once.
bool peer_took_everything(int fd) noexcept;

/// poll() one fd until `events` or the deadline; false on timeout.
bool wait_fd(int fd, short events, deadline dl, std::error_code& ec) noexcept;

/// Credentials of a connected Unix socket's peer (SO_PEERCRED).
peer_identity peer_of(int fd);

/// The user name for a uid, or empty.
std::string user_name(long uid);

} // namespace npipe::detail
