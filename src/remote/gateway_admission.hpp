// SPDX-License-Identifier: MIT
#pragma once
// What the gateway's sessions share (gateway_shared): its options, TLS
// context, export list, counts and event observer, and admission, the caps
// on unauthenticated connections (per address and in all) and on
// authenticated ones (gateway_admission.cpp).

#include "remote/tls.hpp"

#include <npipe/pipe_name.hpp>
#include <npipe/remote.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(ip/tcp.hpp)

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace npipe::detail {

class gateway_session;

// What every session needs from its gateway; sessions keep it alive.
struct gateway_shared {
  gateway_options opts;
  std::shared_ptr<tls::context> tls;
  bool export_all = false;
  std::vector<std::string> exports; // folded
  std::atomic<std::uint64_t> accepted{0}, dropped{0}, tls_failed{0}, refused{0}, relayed{0}, closed{0}, resumed{0};
  std::atomic<unsigned> active{0};

  std::mutex ev_mu;
  std::function<void(const gateway_event&)> on_event;
  void emit(gateway_event::kind k, const std::string& address, const std::string& user, const std::string& pipe,
            std::string reason) {
    std::lock_guard lk(ev_mu);
    if (on_event) on_event(gateway_event{k, address, user, pipe, std::move(reason)});
  }

  bool exported(const pipe_name& n) const {
    return export_all || std::find(exports.begin(), exports.end(), n.folded_name()) != exports.end();
  }

  // Admission. Connections that have not authenticated are few and cheap to
  // drop; authenticated ones have their own budget (max_connections).
  struct unauthenticated {
    std::string key; // source address, or IPv6 /64
    std::weak_ptr<gateway_session> session;
    bool talking = false; // has sent its first byte (its TLS handshake has begun)
  };
  std::mutex adm_mu;
  std::map<std::uint64_t, unauthenticated> unauth; // by accept order
  std::map<std::string, unsigned> unauth_per_key;
  unsigned authenticated = 0;
  std::uint64_t next_seq = 0;

  /// A new unauthenticated connection from `key`: registers it and returns
  /// the one to drop for it, if a cap is reached.
  std::shared_ptr<gateway_session> admit(std::uint64_t& seq, const std::string& key,
                                         const std::shared_ptr<gateway_session>& s);
  void forget(std::map<std::uint64_t, unauthenticated>::iterator it);
  /// The connection `seq` has sent its first byte; false if it was chosen
  /// to be dropped a moment ago (its drop, which tells it so, is on its way).
  bool talking(std::uint64_t seq);
  std::atomic<unsigned> lingering{0}; // dropped connections still being told why
  enum class graduation { ok, dropped, full };
  /// The connection `seq` has authenticated: it leaves the unauthenticated
  /// budget for the authenticated one (unless it was chosen to be dropped).
  graduation graduate(std::uint64_t seq);
  void leave(std::uint64_t seq, bool graduated);
};

/// The key admission counts a client's connections under: its address, or its IPv6 /64.
std::string address_key(const net::ip::tcp::endpoint& ep);

} // namespace npipe::detail
