// SPDX-License-Identifier: MIT
// The client's side of npipe's handshake (client_handshake.hpp): the hello,
// the reply's meaning for each status, and the blocking exchange.

#include "transport/client_handshake.hpp"

#include "core/framing.hpp"
#include "core/pipe_rules.hpp"
#include "transport/local_posix.hpp"

#include <algorithm>
#include <vector>

namespace npipe::detail {

std::string client_hello(const pipe_name& name, const client_options& opts, deadline dl,
                         std::span<const std::byte> first, std::uint32_t& wait_ms) {
  protocol::hello h;
  h.name = name.name();
  auto left = dl.remaining();
  h.wait_ms = dl.never() ? protocol::wait_forever
                         : static_cast<std::uint32_t>(std::min<long long>(left.count(), 0xFFFFFFFEll));
  h.max_message = static_cast<std::uint32_t>(std::min<std::size_t>(opts.max_message_size, UINT32_MAX));
  wait_ms = h.wait_ms;
  auto bytes = protocol::encode_hello(h);
  if (!first.empty()) {
    auto hdr = protocol::encode_frame_header(protocol::frame_type::data, static_cast<std::uint32_t>(first.size()));
    bytes.append(reinterpret_cast<const char*>(hdr.data()), hdr.size());
    bytes.append(reinterpret_cast<const char*>(first.data()), first.size());
  }
  return bytes;
}

bool client_accepts(const pipe_name& name, const client_options& opts, const protocol::reply& rep,
                    std::uint32_t wait_ms, peer_identity server, const std::string& where,
                    std::span<const std::byte> extra, connection_params& p, std::error_code& ec,
                    bool* overloaded) {
  if (rep.status != protocol::status::ok) {
    ec = protocol::status_error(rep.status);
    if (overloaded) *overloaded = rep.status == protocol::status::overloaded && wait_ms > 0;
    switch (rep.status) {
    case protocol::status::user_limit:
      set_error_detail("this user already has as many connections to " + name.str() + " as the server allows");
      break;
    case protocol::status::busy:
      if (wait_ms > 0) {
        set_error_detail("no instance of " + name.str() + " became free within " + std::to_string(wait_ms) + " ms");
        ec = make_error_code(errc::timed_out);
      } else {
        set_error_detail("all instances of " + name.str() + " are busy");
      }
      break;
    case protocol::status::access_denied:
      if (name.is_local())
        set_error_detail("the server of " + name.str() + " (" + describe(server) + ") refuses this user");
      else
        set_error_detail("the server of " + name.name() + " on " + where +
                         " does not accept remote clients (server_options::accept_remote, npipe serve --remote)");
      break;
    case protocol::status::not_found:
      if (name.is_local()) set_error_detail("the server at " + where + " serves a different pipe name");
      else set_error_detail("the gateway at " + where + " does not export " + name.name() + " or no server serves it");
      break;
    case protocol::status::tls_required:
      set_error_detail("the gateway at " + where + " speaks only TLS; give the client TLS options (plaintext needs "
                       "--insecure on both ends)");
      break;
    case protocol::status::shutting_down:
      set_error_detail("the server of " + name.str() + " is shutting down");
      break;
    case protocol::status::wait_queue_full:
      set_error_detail("all instances of " + name.str() +
                       " are busy and as many clients as the server lets wait (max_waiting) are waiting already");
      break;
    case protocol::status::overloaded:
      set_error_detail(name.is_local()
                           ? "the server of " + name.str() +
                                 " has too many connections still in their handshake (max_pending) and let this "
                                 "one go; try again"
                           : "the gateway at " + where +
                                 " is full (its max_connections, or too many connections still authenticating); "
                                 "try again");
      break;
    default: break;
    }
    return false;
  }
  if (rep.max_message < framing::min_receive_limit) {
    set_error_detail("the server at " + where + " declared a receive limit of " + std::to_string(rep.max_message) +
                     " bytes, below npipe's minimum of " + std::to_string(framing::min_receive_limit));
    ec = make_error_code(errc::protocol_error);
    return false;
  }
  p.name = name;
  p.type = rep.type;
  p.mode = pipe_rules::initial_read_mode(rep.type, opts.read_mode);
  if (!pipe_rules::read_mode_allowed(rep.type, p.mode)) {
    set_error_detail("message read mode needs a message pipe; " + name.str() + " is a byte pipe");
    ec = make_error_code(errc::invalid_argument);
    return false;
  }
  p.max_message = opts.max_message_size;
  p.peer_max_message = rep.max_message;
  p.peer = std::move(server);
  p.initial.assign(extra.begin(), extra.end());
  return true;
}

bool client_handshake(byte_stream& stream, const pipe_name& name, const client_options& opts, deadline dl,
                      std::span<const std::byte> first, peer_identity server, const std::string& where,
                      connection_params& p, std::error_code& ec, bool* overloaded) {
  deadline io_dl = dl.never() ? dl : deadline{dl.at + handshake_slack};
  std::uint32_t wait_ms = 0;
  auto bytes = client_hello(name, opts, dl, first, wait_ms);
  std::span<const std::byte> out[1] = {std::as_bytes(std::span(bytes))};
  while (!out[0].empty()) {
    auto r = stream.write_some(out, ec);
    if (r.status == io_status::ok) out[0] = out[0].subspan(r.bytes);
    else if (r.status == io_status::would_block) {
      if (!stream.wait(true, io_dl, ec)) {
        if (!ec) ec = make_error_code(errc::timed_out);
        return false;
      }
    } else {
      // The peer may have answered and hung up before taking all of it (a
      // refusal): its answer is still there to read, and says more.
      ec.clear();
      break;
    }
  }

  // The server answers "busy" when the wait it was asked for ends; allow it a
  // moment beyond our deadline to say so.
  const deadline& reply_dl = io_dl;
  std::vector<std::byte> in(protocol::reply_size + 4096);
  std::size_t got = 0;
  protocol::reply rep;
  bool may_be_ready = false; // the answer takes the server a moment: wait before the first read
  for (;;) {
    auto st = protocol::decode_reply(std::span(in.data(), got), rep, ec);
    if (st == protocol::decode_status::done) break;
    if (st == protocol::decode_status::error) {
      set_error_detail("the program listening at " + where + " does not speak npipe's protocol");
      return false;
    }
    if (!may_be_ready && !stream.wait(false, reply_dl, ec)) {
      if (!ec) {
        set_error_detail("the server of " + name.str() + " did not answer the handshake in time");
        ec = make_error_code(errc::timed_out);
      }
      return false;
    }
    may_be_ready = true;
    auto r = stream.read_some(std::span(in.data() + got, in.size() - got), ec);
    if (r.status == io_status::ok) {
      got += r.bytes;
    } else if (r.status == io_status::would_block) {
      if (!stream.wait(false, reply_dl, ec)) {
        if (!ec) {
          set_error_detail("the server of " + name.str() + " did not answer the handshake in time");
          ec = make_error_code(errc::timed_out);
        }
        return false;
      }
    } else {
      if (!ec) {
        set_error_detail("the server of " + name.str() + " closed the connection during the handshake");
        ec = make_error_code(errc::broken_pipe);
      }
      return false;
    }
  }
  if (!client_accepts(name, opts, rep, wait_ms, std::move(server), where,
                      std::span(in.data() + protocol::reply_size, got - protocol::reply_size), p, ec, overloaded))
    return false;
  if (!first.empty()) p.sent_before = protocol::frame_header_size + first.size(); // the pipelined request
  return true;
}

} // namespace npipe::detail
