// SPDX-License-Identifier: MIT
#pragma once
// The transports the benchmark compares. Each has a server (run in its own
// process) and a client. The server answers every request: a request whose
// first byte is 'A' gets a 1-byte ack (bulk transfer), any other is echoed.

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace bench {

class client {
public:
  virtual ~client() = default;
  /// Send `req`, wait for the reply, store it in `reply`.
  virtual void request(std::span<const std::byte> req, std::vector<std::byte>& reply) = 0;
};

struct transport {
  std::string name;
  /// Serve at `addr` forever (runs in a child process).
  void (*serve)(const std::string& addr);
  std::unique_ptr<client> (*connect)(const std::string& addr);
  /// Largest message it can carry here (0 = unlimited).
  std::size_t max_message = 0;
  /// Connect, one request, close, the way the transport offers it (npipe:
  /// call(), like CallNamedPipe). Null: connect() + request().
  void (*one_shot)(const std::string& addr, std::span<const std::byte> req, std::vector<std::byte>& reply) = nullptr;
  /// Over loopback TCP: reported in its own table, against tcp-raw.
  bool remote = false;
  /// A raw baseline: every ratio is to the best raw row of its table, per metric.
  bool raw = false;
};

/// All transports; `dir` is a scratch directory for socket files.
std::vector<transport> all_transports();

/// Servers a user could write instead (baselines.cpp), over the raw
/// client's framing: one epoll thread, hand-written Asio, hand-written libuv.
void serve_uds_epoll(const std::string& path);
void serve_asio_uds(const std::string& path);
void serve_libuv_pipe(const std::string& path);

} // namespace bench
