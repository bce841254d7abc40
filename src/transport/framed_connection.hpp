// SPDX-License-Identifier: MIT
#pragma once
// npipe's framing over any byte stream (docs/protocol.md): message
// boundaries, "more data" partial reads, peek, and flush acknowledgements.
// Portable: used for Linux local pipes and for remote pipes.

#include "core/framing.hpp"
#include "core/pipe_rules.hpp"
#include "core/protocol.hpp"
#include "transport/byte_stream.hpp"
#include "transport/transport.hpp"

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>

namespace npipe::detail {

using framed_params = connection_params;

class framed_connection final : public connection_impl {
public:
  framed_connection(std::unique_ptr<byte_stream> stream, framed_params params);
  ~framed_connection() override;

  bool is_open() const noexcept override { return open_.load(std::memory_order_acquire); }
  bool broken() const noexcept override { return broken_.load(std::memory_order_acquire); }
  pipe_type type() const noexcept override { return p_.type; }
  npipe::read_mode read_mode() const noexcept override { return mode_.load(std::memory_order_relaxed); }
  void set_read_mode(npipe::read_mode m, std::error_code& ec) noexcept override;
  void write(std::span<const std::byte> data, deadline dl, std::error_code& ec) noexcept override;
  read_result read(std::span<std::byte> buf, deadline dl, std::error_code& ec) noexcept override;
  std::vector<std::byte> receive(deadline dl, std::error_code& ec) override;
  std::vector<std::byte> transact(std::span<const std::byte> request, deadline dl, std::error_code& ec) override;
  peek_result peek(std::span<std::byte> buf, std::error_code& ec) noexcept override;
  void flush(deadline dl, std::error_code& ec) noexcept override;
  void close() noexcept override;
  const peer_identity& peer() const noexcept override { return p_.peer; }
  const pipe_name& name() const noexcept override { return p_.name; }
  std::size_t peer_max_message_size() const noexcept override { return p_.peer_max_message; }
  std::intptr_t native_handle() const noexcept override { return s_->native_handle(); }

private:
  static constexpr std::size_t rx_chunk = 64u << 10;        // normal receive buffer
  static constexpr std::size_t direct_read_min = 16u << 10; // read straight into the caller's buffer from here on
  static constexpr std::size_t header_read = 16u << 10;     // a read that looks for a frame header asks for this much
  static constexpr std::size_t lookahead_limit = 4u << 20;  // how far flush() and peek() may buffer ahead
  static std::error_code err(errc e) { return make_error_code(e); }

  // Receive side; used only by the rx_owner.
  std::size_t buffered() const noexcept { return rend_ - rpos_; }
  enum class head_status { data, need_more, error };
  std::size_t make_room(std::size_t limit);
  bool fill(deadline dl, std::error_code& ec, std::size_t limit = 0);
  void fill_nonblocking(std::size_t limit);
  bool top_up(std::size_t& budget);
  bool wait_readable(deadline dl, std::error_code& ec);
  bool read_into(std::span<std::byte> dst, deadline dl, std::size_t& n, std::error_code& ec);
  bool read_direct(std::byte* out, std::size_t want, deadline dl, std::size_t& n, std::error_code& ec);
  head_status head(deadline dl, std::error_code& ec, bool take_data = true);
  bool payload(std::byte* out, std::size_t want, deadline dl, std::size_t& n, std::error_code& ec);
  void scan_for_acks();
  bool data_pending();
  read_result read_locked(std::span<std::byte> buf, deadline dl, std::error_code& ec);
  std::vector<std::byte> receive_locked(deadline dl, std::error_code& ec);
  std::vector<std::byte> receive_message(deadline dl, std::error_code& ec);
  bool settle_debt(deadline dl, std::error_code& ec);
  void out_of_memory(std::error_code& ec) noexcept;
  // The receive side is owned by one caller at a time: a flag under state_mu_
  // (not a timed mutex, so waits honour deadlines and flushers can wait for
  // acks and for the flag with one condition variable).
  class rx_owner {
  public:
    rx_owner(framed_connection& c) : c_(c) {}
    ~rx_owner() { release(); }
    bool acquire(deadline dl, std::error_code& ec);
    bool try_acquire();
    void release();

  private:
    framed_connection& c_;
    bool owned_ = false;
  };
  void count_ack();

  // Send side.
  /// `at`, if given, gets the frame's offset in our stream.
  void send_frame(protocol::frame_type t, std::span<const std::byte> payload, deadline dl, std::error_code& ec,
                  std::uint64_t* at = nullptr);
  void send_receipt() noexcept;
  void note_consumed(std::uint64_t offset);
  void send_all(std::span<const std::span<const std::byte>> bufs, deadline dl, std::error_code& ec);

  std::unique_ptr<byte_stream> s_;
  framed_params p_;
  std::atomic<npipe::read_mode> mode_;
  std::atomic<bool> open_{true};
  std::atomic<bool> broken_{false}; // the send side is torn, or the stream was ended here (broken())

  // Like std::vector<std::byte> but grows without zero-filling, so pages the
  // kernel never writes into stay out of the resident set.
  class raw_buffer {
  public:
    std::byte* data() noexcept { return p_.get(); }
    std::size_t size() const noexcept { return n_; }
    void resize(std::size_t n) {
      if (n <= n_) return;
      std::unique_ptr<std::byte[]> q(new std::byte[n]);
      if (n_) std::memcpy(q.get(), p_.get(), n_);
      p_ = std::move(q);
      n_ = n;
    }
    void assign(const std::vector<std::byte>& v) {
      resize(v.size());
      if (!v.empty()) std::memcpy(p_.get(), v.data(), v.size());
    }

  private:
    std::unique_ptr<std::byte[]> p_;
    std::size_t n_ = 0;
  };
  raw_buffer rx_;
  std::size_t rpos_ = 0, rend_ = 0; // rx_[rpos_, rend_) is received and not yet taken by rd_
  framing::reader rd_;               // where the peer's stream is, up to rx_[rpos_]
  framing::reader scan_;             // a flusher's walk ahead of rd_ through the buffer
  std::vector<std::byte> partial_; // current message bytes taken off the stream by a receive() that timed out
  pipe_rules::reply_debt debt_;    // replies of transacts that gave up: discarded as they arrive
  std::uint64_t ack_scan_ = 0;     // flush_acks before this stream offset are already counted (by scan_)
  bool eof_ = false;
  std::atomic<bool> peer_closed_{false}; // eof_ as the send side may read it
  std::error_code rx_err_;         // sticky: protocol error, oversize frame, transport failure

  std::mutex tx_mu_;
  bool tx_broken_ = false;
  std::uint64_t tx_offset_ = 0;    // bytes of our stream sent (under tx_mu_)
  framing::receipts receipts_;     // what we told a remote peer we consumed (rx owner)

  std::mutex state_mu_;            // guards the fields below
  std::condition_variable state_cv_;
  bool rx_busy_ = false;           // someone owns the receive side
  framing::flush_tracker flushes_;  // our flushes, the peer's acknowledgements and receipts
};

} // namespace npipe::detail
