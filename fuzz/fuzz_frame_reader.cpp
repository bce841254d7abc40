// SPDX-License-Identifier: MIT
// Fuzz target: the frame engine's reader (src/core/framing.hpp), which every
// framing end (blocking and async, local and remote) reads the peer with,
// fed arbitrary bytes in arbitrary pieces. However the stream is cut it must
// report the same frames as when it arrives whole; never take more than it
// is given, never announce a data frame over the limit, keep its offset equal
// to what it took; and a copy made at any point (peek, a flusher's walk
// ahead) must report what the original reports from there.
#include "core/framing.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

using namespace npipe::detail;

void check(bool ok) {
  if (!ok) std::abort();
}

struct log_entry {
  framing::event what;
  std::uint64_t at;
  std::uint64_t value; // data: length; consumed: the offset
  bool operator==(const log_entry&) const = default;
};

// Runs a reader over `in`; piece sizes come from `cuts` (all at once when
// empty). Payload is taken in pieces too. Returns the frames reported.
std::vector<log_entry> run(framing::reader r, const std::uint8_t* in, std::size_t n, const std::uint8_t* cuts,
                           std::size_t ncuts, std::size_t max) {
  std::vector<log_entry> log;
  std::size_t pos = 0, k = 0;
  const std::uint64_t start = r.offset();
  while (pos < n) {
    std::size_t piece = ncuts ? 1 + cuts[k++ % ncuts] % 97 : n;
    std::size_t end = std::min(n, pos + piece);
    while (pos < end) {
      if (r.in_data()) {
        std::size_t c = std::min<std::size_t>(r.left(), end - pos);
        r.took(c);
        pos += c;
        if (r.left() == 0) r.end_data();
        continue;
      }
      auto s = r.next(std::span(reinterpret_cast<const std::byte*>(in + pos), end - pos));
      check(s.used <= end - pos);
      pos += s.used;
      if (s.what == framing::event::need_more) {
        check(pos == end); // it takes all it is given while inside a header
        continue;
      }
      if (s.what == framing::event::error) {
        log.push_back({s.what, s.at, 0});
        check(static_cast<bool>(r.error()) && !r.error_detail().empty());
        check(r.next(std::span(reinterpret_cast<const std::byte*>(in), n)).what == framing::event::error);
        return log;
      }
      if (s.what == framing::event::data) {
        check(s.length <= max);
        check(r.in_data() && r.left() == s.length);
      }
      log.push_back({s.what, s.at, s.what == framing::event::consumed ? s.consumed : s.length});
    }
    check(r.offset() - start == pos);
  }
  return log;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t max = std::size_t(4096) << (data[0] >> 5); // 4 KiB .. 512 KiB
  const std::uint8_t* in = data + 1;
  const std::size_t n = size - 1;
  const framing::reader fresh(max);
  auto whole = run(fresh, in, n, nullptr, 0, max);
  auto cut = run(fresh, in, n, in, n, max);
  check(whole == cut);
  // A copy taken after a prefix goes on as the original does: run the
  // prefix, then the rest from a copy, and compare with the whole run.
  const std::size_t split = n ? in[0] % (n + 1) : 0;
  framing::reader r(max);
  std::vector<log_entry> first;
  {
    std::size_t pos = 0;
    while (pos < split && !r.error()) {
      if (r.in_data()) {
        std::size_t c = std::min<std::size_t>(r.left(), split - pos);
        r.took(c);
        pos += c;
        if (r.left() == 0) r.end_data();
        continue;
      }
      auto s = r.next(std::span(reinterpret_cast<const std::byte*>(in + pos), split - pos));
      pos += s.used;
      if (s.what == framing::event::need_more) break;
      first.push_back({s.what, s.at, s.what == framing::event::consumed ? s.consumed : s.length});
      if (s.what == framing::event::error) break;
    }
    if (r.error()) return 0;
    check(pos == split);
  }
  framing::reader copy = r;
  auto rest = run(copy, in + split, n - split, in, n, max);
  first.insert(first.end(), rest.begin(), rest.end());
  check(first == whole);
  return 0;
}
