// SPDX-License-Identifier: MIT
// `npipe send`, `npipe call` and `npipe bench`: clients of a running server.

#include "cli.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>
#include <iostream>
#include <iterator>
#include <thread>

#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif

namespace npipe_cli {

namespace {

// A byte pipe's reply has no boundary, so where it ends is a judgement: the
// peer closed, or it has said nothing for this long after the whole message
// was written and a first byte of the reply came. Short enough that a small
// echo returns at once, long enough for a server busy with a large one.
constexpr std::chrono::milliseconds quiet_gap{200};

// Write `message` and collect the reply on a byte pipe. Reads while a second
// thread writes: a server that echoes as it reads fills the buffers back
// towards us, and a client that only wrote would wait for ever.
std::error_code byte_exchange(npipe::connection& c, const std::string& message, const deadline& dl,
                              std::string& reply) {
  using clock = std::chrono::steady_clock;
  std::error_code wec;
  std::atomic<bool> written{false};
  std::atomic<clock::rep> written_at{0};
  std::thread writer([&] {
    c.write(std::as_bytes(std::span(message)), dl.left(), wec);
    written_at = clock::now().time_since_epoch().count();
    written = true;
  });
  std::error_code ec;
  std::vector<std::byte> buf(64 << 10);
  auto last_data = clock::now();
  for (;;) {
    std::error_code rec;
    auto r = c.read(buf, std::min<npipe::timeout>(dl.left(), quiet_gap / 4), rec);
    if (!rec) { // a partial message is not an error: more of it comes with the next read
      reply.append(reinterpret_cast<const char*>(buf.data()), r.bytes);
      last_data = clock::now();
      continue;
    }
    if (rec == npipe::errc::broken_pipe) break; // the server closed: its reply is complete
    if (rec != npipe::errc::timed_out) {
      ec = rec;
      break;
    }
    if (written) {
      if (wec) break; // reported below
      auto since = std::max(last_data, clock::time_point(clock::duration(written_at.load())));
      if (!reply.empty() && clock::now() - since >= quiet_gap) break;
    }
    if (dl.passed()) {
      ec = rec; // nothing, or no end of the reply, within --timeout
      break;
    }
  }
  if (ec) c.close(); // the writer may still wait for the peer to read
  writer.join();
  if (!ec && wec && wec != npipe::errc::broken_pipe) ec = wec;
  return ec;
}

// All of `in`, in large reads (not a character at a time: a message may be
// many MiB).
std::string slurp(std::istream& in) {
  std::string out;
  std::vector<char> buf(1 << 16);
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0)
    out.append(buf.data(), static_cast<std::size_t>(in.gcount()));
  return out;
}

std::string read_message(const client_args& a) {
  std::string message;
  if (!a.file.empty()) {
    std::ifstream in(a.file, std::ios::binary);
    if (!in) throw usage_error("cannot read " + a.file + ": " + std::strerror(errno));
    message = slurp(in);
  } else if (a.message_opt->count() == 0 || a.text == "-") {
#ifdef _WIN32
    _setmode(_fileno(stdin), _O_BINARY); // the message byte for byte
#endif
    message = slurp(std::cin);
  } else {
    message = a.text; // as given, even when empty
  }
  return message;
}

std::optional<std::uint32_t> server_uid(const std::string& user) {
  if (user.empty()) return std::nullopt;
  return parse_user(user);
}

} // namespace

int run_send(const client_args& a, bool raw) {
  // Everything that can be refused is checked before standard input or the
  // file is read: a bad name must not wait for the end of the input.
  auto name = parse_name(a.name);
  npipe::client_options o;
  if (int rc = client_options_of(name, a.dir, a.tls, server_uid(a.server_user), o); rc != 0) return rc;
  std::string message = read_message(a);

  deadline dl(ms(a.timeout_ms)); // one bound for the whole exchange
  std::error_code ec;
  auto c = npipe::connect(name, o, dl.left(), ec);
  if (ec) return report(ec, "cannot open " + name.str());
  std::string reply;
  if (c.type() == npipe::pipe_type::byte) {
    ec = byte_exchange(c, message, dl, reply);
    if (ec)
      return report(ec, "no complete response from " + name.str() + " within " + std::to_string(a.timeout_ms) + " ms");
  } else {
    c.write(std::as_bytes(std::span(message)), dl.left(), ec);
    if (ec) return report(ec, "cannot send to " + name.str());
    auto r = c.receive(dl.left(), ec);
    if (ec) return report(ec, "no response from " + name.str());
    reply.assign(reinterpret_cast<const char*>(r.data()), r.size());
  }
  if (raw) {
#ifdef _WIN32
    std::cout.flush();
    _setmode(_fileno(stdout), _O_BINARY); // the reply byte for byte: no CR before LF, no ^Z as end of file
#endif
    std::cout << reply << std::flush;
  } else {
    std::cout << "Response received: [" << reply << "]" << std::endl;
  }
  return 0;
}

// A quick check against a running server: round-trip latency, then throughput.
int run_bench(const bench_args& a) {
  auto uid = server_uid(a.server_user);
  std::vector<npipe::pipe_name> names;
  for (auto& text : a.names)
    names.push_back(parse_name(text));
  auto t = ms(a.timeout_ms);
  for (auto& name : names) {
    npipe::client_options o;
    if (int rc = client_options_of(name, a.dir, a.tls, uid, o); rc != 0) return rc;
    std::error_code ec;
    auto c = npipe::connect(name, o, t, ec);
    if (ec) return report(ec, "cannot open " + name.str());
    std::vector<std::byte> small(64, std::byte{'x'});
    std::vector<double> us;
    us.reserve(a.count);
    for (std::size_t i = 0; i < a.count + a.count / 10; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      c.transact(small, t, ec);
      if (ec) return report(ec, "transact failed");
      if (i >= a.count / 10) // the first tenth warms up
        us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(us.begin(), us.end());
    std::vector<std::byte> big(a.size, std::byte{'A'});
    std::size_t sent = 0;
    auto t0 = std::chrono::steady_clock::now();
    auto window = std::chrono::duration<double>(a.seconds);
    while (std::chrono::steady_clock::now() - t0 < window) {
      c.transact(big, t, ec);
      if (ec) return report(ec, "transact failed");
      sent += a.size;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: round trip 64 B p50 %.1f us, p99 %.1f us (%zu samples); %zu-byte requests %.1f MiB/s\n",
                name.str().c_str(), us[us.size() / 2], us[us.size() * 99 / 100], us.size(), a.size,
                static_cast<double>(sent) / secs / (1 << 20));
  }
  return 0;
}

} // namespace npipe_cli
