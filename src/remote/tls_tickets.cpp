// SPDX-License-Identifier: MIT
// TLS 1.3 session tickets for remote pipes (tls.hpp): a gateway's stamp of
// the full handshake behind each ticket and its check when one comes back,
// a client's store of the tickets it was sent.

#include "remote/tls.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <mutex>

namespace npipe::detail::tls {

int ticket_key_index() {
  static const int i = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return i;
}

// A resumed session's certificate was verified when the session was made;
// it must still be within its validity now.
bool still_valid(const X509* cert) {
  return cert && X509_cmp_current_time(X509_get0_notAfter(cert)) > 0 &&
         X509_cmp_current_time(X509_get0_notBefore(cert)) < 0;
}


namespace {

// A client's new ticket, kept under the key its session was started with:
// a copy, since OpenSSL marks the live session unresumable if its
// connection ends without a close_notify (and would write that flag while
// another thread reads the kept one).
int new_ticket(SSL* ssl, SSL_SESSION* sess) {
  const context* c = context::of(ssl);
  auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, ticket_key_index()));
  if (!c || !key || !SSL_SESSION_is_resumable(sess)) return 0;
  if (SSL_SESSION* copy = SSL_SESSION_dup(sess)) c->keep_ticket(*key, copy);
  return 0; // OpenSSL keeps (and frees) its own reference
}

// A gateway's tickets carry when the full handshake behind them was (renewed
// tickets keep it): a ticket from a handshake longer ago than the
// gateway's session_resumption is not used, so a client's certificate (and its chain)
// is verified at least that often, however often it reconnects.
int stamp_ticket(SSL* ssl, void* lifetime) {
  SSL_SESSION* sess = SSL_get0_session(ssl);
  void* data = nullptr;
  std::size_t len = 0;
  if (SSL_session_reused(ssl) && SSL_SESSION_get0_ticket_appdata(sess, &data, &len) && len == sizeof(std::int64_t)) {
    // A renewal: the first handshake's time stands, and the lifetime the
    // client is told (the ticket's timeout) is what is left of it, so a
    // client does not offer a ticket this gateway would decline.
    std::int64_t at = 0;
    std::memcpy(&at, data, sizeof at);
    const std::int64_t left = *static_cast<const std::int64_t*>(lifetime) - (::time(nullptr) - at);
    SSL_SESSION_set_timeout(sess, static_cast<long>(std::max<std::int64_t>(left, 1)));
    return 1;
  }
  const std::int64_t now = ::time(nullptr);
  return SSL_SESSION_set1_ticket_appdata(sess, &now, sizeof now);
}

SSL_TICKET_RETURN check_ticket(SSL*, SSL_SESSION* sess, const unsigned char*, std::size_t, SSL_TICKET_STATUS status,
                               void* lifetime) {
  if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW) return SSL_TICKET_RETURN_IGNORE_RENEW;
  void* data = nullptr;
  std::size_t len = 0;
  std::int64_t at = 0;
  if (!SSL_SESSION_get0_ticket_appdata(sess, &data, &len) || len != sizeof at) return SSL_TICKET_RETURN_IGNORE_RENEW;
  std::memcpy(&at, data, sizeof at);
  const std::int64_t now = ::time(nullptr);
  // Too old, from the future, or its certificate expired since: a full
  // handshake instead, whose verification then says what is wrong.
  if (now - at > *static_cast<const std::int64_t*>(lifetime) || at > now + 60 || !still_valid(SSL_SESSION_get0_peer(sess)))
    return SSL_TICKET_RETURN_IGNORE_RENEW;
  return SSL_TICKET_RETURN_USE_RENEW;
}

} // namespace

bool set_up_tickets(SSL_CTX* x, role r, bool resumes, const std::int64_t* lifetime) {
  if (!resumes) {
    SSL_CTX_set_options(x, SSL_OP_NO_TICKET);
    if (r == role::server) SSL_CTX_set_num_tickets(x, 0);
    return true;
  }
  // Stateless tickets: sealed with this context's random key, so a
  // gateway that reopens (new files) makes every earlier ticket useless.
  SSL_CTX_clear_options(x, SSL_OP_NO_TICKET);
  if (r == role::client) {
    SSL_CTX_set_timeout(x, max_ticket_lifetime_s); // at most: the gateway's lifetime hint rules
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(x, new_ticket);
    return true;
  }
  SSL_CTX_set_num_tickets(x, 1);
  SSL_CTX_set_timeout(x, static_cast<long>(*lifetime)); // the lifetime hint clients get too
  SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
  return SSL_CTX_set_session_ticket_cb(x, stamp_ticket, check_ticket, const_cast<std::int64_t*>(lifetime)) == 1;
}

SSL_SESSION* context::take_ticket(const std::string& key) const {
  std::lock_guard lk(tickets_mu_);
  for (auto it = tickets_.begin(); it != tickets_.end(); ++it) {
    if (it->first != key) continue;
    SSL_SESSION* s = it->second;
    tickets_.erase(it);
    long life = SSL_SESSION_get_timeout(s);
    if (unsigned long hint = SSL_SESSION_get_ticket_lifetime_hint(s); hint > 0 && static_cast<long>(hint) < life)
      life = static_cast<long>(hint);
    // A ticket the gateway would refuse is not offered (it costs both ends
    // work first): expired, or for a server certificate that has expired since.
    if (SSL_SESSION_is_resumable(s) && SSL_SESSION_get_time(s) + life > ::time(nullptr) &&
        still_valid(SSL_SESSION_get0_peer(s)))
      return s;
    SSL_SESSION_free(s);
    return nullptr;
  }
  return nullptr;
}

void context::keep_ticket(const std::string& key, SSL_SESSION* s) const {
  constexpr std::size_t max_tickets = 32;
  std::lock_guard lk(tickets_mu_);
  for (auto it = tickets_.begin(); it != tickets_.end(); ++it) {
    if (it->first != key) continue;
    SSL_SESSION_free(it->second); // the newest ticket replaces an older one
    tickets_.erase(it);
    break;
  }
  if (tickets_.size() >= max_tickets) {
    SSL_SESSION_free(tickets_.front().second);
    tickets_.erase(tickets_.begin());
  }
  tickets_.emplace_back(key, s);
}

bool resumed_from_ticket(SSL* ssl, const context& ctx) noexcept {
  if (!SSL_session_reused(ssl)) return false;
  if (ctx.side() == role::server) return SSL_get_ex_data(ssl, psk_index()) == nullptr;
  return ctx.options().psk.empty();
}

} // namespace npipe::detail::tls
