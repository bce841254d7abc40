// SPDX-License-Identifier: MIT
// The gateway's admission: which unauthenticated connection is dropped when
// one address, or all of them, reach their cap, and the move of an
// authenticated connection to the max_connections budget.

#include "remote/gateway_admission.hpp"

#include <cstddef>

namespace npipe::detail {

namespace {

using tcp = net::ip::tcp;

} // namespace

std::shared_ptr<gateway_session> gateway_shared::admit(std::uint64_t& seq, const std::string& key,
                                                       const std::shared_ptr<gateway_session>& s) {
  std::lock_guard lk(adm_mu);
  std::string victim_key;
  unsigned& mine = unauth_per_key[key];
  if (mine >= opts.max_unauthenticated_per_address) {
    victim_key = key;
  } else if (unauth.size() >= opts.max_unauthenticated) {
    victim_key = key;
    unsigned most = mine;
    for (auto& [k, n] : unauth_per_key)
      if (n > most) {
        most = n;
        victim_key = k;
      }
  }
  std::shared_ptr<gateway_session> victim;
  if (!victim_key.empty()) {
    // The oldest of that address that has said nothing yet: it can be
    // told, in plaintext, to try again. When that address is the
    // newcomer's own and all its others are in their TLS handshake, the
    // newcomer itself is told (a burst from one host is slowed, not cut);
    // another address's oldest goes even mid-handshake (it holds the most).
    auto pick = unauth.end(), oldest = unauth.end();
    for (auto it = unauth.begin(); it != unauth.end(); ++it) {
      if (it->second.key != victim_key) continue;
      if (oldest == unauth.end()) oldest = it;
      if (!it->second.talking) {
        pick = it;
        break;
      }
    }
    if (pick == unauth.end() && victim_key != key) pick = oldest;
    if (pick == unauth.end()) {
      seq = 0; // the newcomer: not registered, dropped at once
      return s;
    }
    victim = pick->second.session.lock();
    forget(pick);
  }
  seq = ++next_seq;
  unauth[seq] = {key, s};
  ++unauth_per_key[key];
  return victim;
}

void gateway_shared::forget(std::map<std::uint64_t, unauthenticated>::iterator it) {
  if (auto k = unauth_per_key.find(it->second.key); k != unauth_per_key.end() && --k->second == 0)
    unauth_per_key.erase(k);
  unauth.erase(it);
}

bool gateway_shared::talking(std::uint64_t seq) {
  std::lock_guard lk(adm_mu);
  auto it = unauth.find(seq);
  if (it == unauth.end()) return false;
  it->second.talking = true;
  return true;
}

gateway_shared::graduation gateway_shared::graduate(std::uint64_t seq) {
  std::lock_guard lk(adm_mu);
  auto it = unauth.find(seq);
  if (it == unauth.end()) return graduation::dropped;
  forget(it);
  if (authenticated >= opts.max_connections) return graduation::full;
  ++authenticated;
  return graduation::ok;
}

void gateway_shared::leave(std::uint64_t seq, bool graduated) {
  std::lock_guard lk(adm_mu);
  if (graduated) --authenticated;
  else if (auto it = unauth.find(seq); it != unauth.end()) forget(it);
}

// Rate limits count IPv6 clients by their /64 network (one host's usual
// allocation), IPv4 (and IPv4-mapped IPv6) clients by their address.
std::string address_key(const tcp::endpoint& ep) {
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped()) a = net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6());
  if (a.is_v4()) return a.to_string();
  auto b = a.to_v6().to_bytes();
  std::string k = "v6:";
  static constexpr char hex[] = "0123456789abcdef";
  for (int i = 0; i < 8; ++i) {
    k += hex[b[static_cast<std::size_t>(i)] >> 4];
    k += hex[b[static_cast<std::size_t>(i)] & 15];
  }
  return k;
}

} // namespace npipe::detail
