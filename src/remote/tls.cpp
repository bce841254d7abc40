// SPDX-License-Identifier: MIT
#include "remote/tls.hpp"

#include "core/protocol.hpp"

#include "transport/posix_util.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <cerrno>
#include <fcntl.h>
#include <mutex>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace npipe::detail::tls {

namespace {

// TLS 1.3 external PSKs use this suite's hash (SHA-256), as RFC 8446 says a
// PSK without a stated hash does.
constexpr unsigned char psk_suite[2] = {0x13, 0x01}; // TLS_AES_128_GCM_SHA256
constexpr std::size_t psk_min_bytes = 32, psk_max_bytes = 64, psk_identity_max = 128;

std::error_code invalid(std::string detail) {
  set_error_detail(std::move(detail));
  return make_error_code(errc::invalid_argument);
}

} // namespace

int ticket_key_index() {
  static const int i = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return i;
}

namespace {

int context_index() { // on a session: its context, which the session holds
  static const int i = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return i;
}
int psk_index() { // on a server session: 1 + the index of the PSK the client used
  static const int i = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return i;
}

// A resumed session's certificate was verified when the session was made;
// it must still be within its validity now.
bool still_valid(const X509* cert) {
  return cert && X509_cmp_current_time(X509_get0_notAfter(cert)) > 0 &&
         X509_cmp_current_time(X509_get0_notBefore(cert)) < 0;
}

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

SSL_SESSION* psk_session(SSL* ssl, const psk_key& k) {
  const SSL_CIPHER* suite = SSL_CIPHER_find(ssl, psk_suite);
  if (!suite) return nullptr;
  SSL_SESSION* s = SSL_SESSION_new();
  if (s && SSL_SESSION_set1_master_key(s, k.key.data(), k.key.size()) && SSL_SESSION_set_cipher(s, suite) &&
      SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION))
    return s;
  SSL_SESSION_free(s);
  return nullptr;
}

int client_psk(SSL* ssl, const EVP_MD* md, const unsigned char** id, std::size_t* idlen, SSL_SESSION** sess) {
  *sess = nullptr;
  const context* c = context::of(ssl);
  if (!c || c->options().psk.empty()) return 1;
  const SSL_CIPHER* suite = SSL_CIPHER_find(ssl, psk_suite);
  if (!suite || (md && md != SSL_CIPHER_get_handshake_digest(suite))) return 1; // HelloRetry with another hash: no PSK
  const psk_key& k = c->options().psk.front();
  *sess = psk_session(ssl, k);
  if (!*sess) return 0;
  *id = reinterpret_cast<const unsigned char*>(k.identity.data());
  *idlen = k.identity.size();
  return 1;
}

int server_psk(SSL* ssl, const unsigned char* id, std::size_t idlen, SSL_SESSION** sess) {
  *sess = nullptr;
  const context* c = context::of(ssl);
  if (!c) return 1;
  std::string_view wanted(reinterpret_cast<const char*>(id), idlen);
  const auto& keys = c->options().psk;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].identity != wanted) continue;
    *sess = psk_session(ssl, keys[i]);
    if (!*sess) return 0;
    SSL_set_ex_data(ssl, psk_index(), reinterpret_cast<void*>(static_cast<std::uintptr_t>(i + 1)));
    SSL_set_num_tickets(ssl, 0); // a PSK client has no use for a ticket (it does not resume)
    return 1;
  }
  return 1; // unknown identity: no PSK; the handshake then needs a certificate
}

bool printable_identity(const std::string& s) {
  return !s.empty() && s.size() <= psk_identity_max &&
         std::all_of(s.begin(), s.end(), [](char ch) { return ch > ' ' && ch < 0x7f && ch != ':'; });
}

} // namespace

std::string last_error_text(const std::string& fallback) {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    // "error:0A000086:SSL routines::certificate verify failed": keep the reason.
    std::string_view t(buf);
    auto colon = t.rfind(':');
    if (!out.empty()) out += "; ";
    out += colon == std::string_view::npos ? t : t.substr(colon + 1);
  }
  return out.empty() ? fallback : out;
}

bool check_options(role r, const tls_options& o, std::error_code& ec) {
  bool has_cert = !o.cert_file.empty(), has_key = !o.key_file.empty();
  if (o.insecure) {
    if (has_cert || has_key || !o.ca_file.empty() || !o.psk.empty()) {
      ec = invalid("tls.insecure (plaintext) cannot be combined with certificates or pre-shared keys");
      return false;
    }
    return true;
  }
  if (has_cert != has_key) {
    ec = invalid("tls.cert_file and tls.key_file go together");
    return false;
  }
  for (const auto& k : o.psk) {
    if (!printable_identity(k.identity)) {
      ec = invalid("a PSK identity is 1 to 128 printable ASCII characters without spaces or ':'");
      return false;
    }
    if (k.key.size() < psk_min_bytes || k.key.size() > psk_max_bytes) {
      ec = invalid("the PSK for '" + k.identity + "' has " + std::to_string(k.key.size()) +
                   " bytes; use 32 to 64 random bytes (openssl rand -hex 32)");
      return false;
    }
  }
  if (r == role::client) {
    if (o.ca_file.empty() && o.psk.empty()) {
      ec = invalid("a remote client needs tls.ca_file to verify the gateway (with cert_file/key_file when the "
                   "gateway asks for client certificates) or a pre-shared key; plaintext needs tls.insecure on "
                   "both ends");
      return false;
    }
  } else {
    if (o.psk.empty() && (o.ca_file.empty() || !has_cert)) {
      ec = invalid("a gateway needs tls.ca_file plus its own cert_file and key_file (clients then need "
                   "certificates signed by that CA), or pre-shared keys; plaintext needs tls.insecure");
      return false;
    }
    if (!o.ca_file.empty() && !has_cert) {
      ec = invalid("a gateway that verifies client certificates (tls.ca_file) needs its own cert_file and key_file");
      return false;
    }
  }
  return true;
}

std::shared_ptr<context> context::make(role r, const tls_options& o, std::error_code& ec,
                                       std::chrono::seconds resume_for) {
  ec.clear();
  if (!check_options(r, o, ec)) return nullptr;
  std::shared_ptr<context> c(new context(r, o));
  if (o.insecure) return c;
  ERR_clear_error();
  c->ctx_ = SSL_CTX_new(r == role::client ? TLS_client_method() : TLS_server_method());
  SSL_CTX* x = c->ctx_;
  auto fail = [&](const std::string& what) {
    ec = invalid(what + ": " + last_error_text());
    return nullptr;
  };
  if (!x) return fail("cannot create a TLS context");
  // TLS 1.3 only; no renegotiation (1.3 has none), and never
  // SSL_OP_ALLOW_NO_DHE_KEX: PSKs, external or from a ticket, are psk_dhe_ke
  // only (a resumption has a fresh key exchange too). Session tickets where
  // they save work, certificates (see resumes()); never early data.
  if (!SSL_CTX_set_min_proto_version(x, TLS1_3_VERSION)) return fail("cannot require TLS 1.3");
  SSL_CTX_clear_options(x, SSL_OP_ALLOW_NO_DHE_KEX);
  c->resume_for_ = resume_for.count();
  c->resumes_ = r == role::server ? !o.ca_file.empty() && c->resume_for_ > 0 : o.psk.empty();
  SSL_CTX_set_max_early_data(x, 0);
  if (c->resumes_) {
    // Stateless tickets: sealed with this context's random key, so a
    // gateway that reopens (new files) makes every earlier ticket useless.
    SSL_CTX_clear_options(x, SSL_OP_NO_TICKET);
    if (r == role::server) {
      SSL_CTX_set_num_tickets(x, 1);
      SSL_CTX_set_timeout(x, static_cast<long>(c->resume_for_)); // the lifetime hint clients get too
      SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
      if (!SSL_CTX_set_session_ticket_cb(x, stamp_ticket, check_ticket, &c->resume_for_))
        return fail("cannot set up session tickets");
    } else {
      SSL_CTX_set_timeout(x, max_ticket_lifetime_s); // at most: the gateway's lifetime hint rules
      SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
      SSL_CTX_sess_set_new_cb(x, new_ticket);
    }
  } else {
    SSL_CTX_set_options(x, SSL_OP_NO_TICKET);
    if (r == role::server) SSL_CTX_set_num_tickets(x, 0);
  }
  if (r == role::server) {
    // A PSK handshake counts as a resumption, which OpenSSL refuses on a
    // verifying server without a session id context.
    static constexpr unsigned char sid[] = "npipe";
    SSL_CTX_set_session_id_context(x, sid, sizeof sid - 1);
  }
  SSL_CTX_set_mode(x, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Read what the socket has, not a record header and then its body: half
  // the system calls on bulk transfers. Whole records may then wait inside
  // OpenSSL where poll() cannot see them: readers drain until WANT_READ.
  SSL_CTX_set_read_ahead(x, 1);
  // Idle sessions give their record buffers back (the gateway holds many).
  SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS);
  if (!o.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(x, o.cert_file.c_str()) != 1)
      return fail("cannot load the certificate " + o.cert_file);
    if (SSL_CTX_use_PrivateKey_file(x, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
      return fail("cannot load the private key " + o.key_file);
    if (SSL_CTX_check_private_key(x) != 1)
      return fail("the private key " + o.key_file + " does not match the certificate " + o.cert_file);
  }
  if (!o.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(x, o.ca_file.c_str(), nullptr) != 1)
      return fail("cannot load the CA file " + o.ca_file);
    if (r == role::server) {
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.ca_file.c_str()))
        SSL_CTX_set_client_CA_list(x, names);
    }
  }
  // A client always verifies a server certificate (a PSK handshake has
  // none); a server with a CA insists on a client certificate unless the
  // client authenticated with a PSK.
  if (r == role::client) SSL_CTX_set_verify(x, SSL_VERIFY_PEER, nullptr);
  else if (!o.ca_file.empty()) SSL_CTX_set_verify(x, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  if (!o.psk.empty()) {
    // A server uses a PSK only if the suite it picks has the PSK's hash
    // (SHA-256); by default both ends would prefer TLS_AES_256_GCM_SHA384.
    if (SSL_CTX_set_ciphersuites(x, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256") != 1)
      return fail("cannot select the TLS 1.3 suites for pre-shared keys");
    if (r == role::client) SSL_CTX_set_psk_use_session_callback(x, client_psk);
    else SSL_CTX_set_psk_find_session_callback(x, server_psk);
  }
  return c;
}

namespace {

// What a context was built from, on disk: the CA file's bytes, and a
// SHA-256 digest of the certificate and key files (which may hold a private
// key: none of its bytes is kept), read before and again after OpenSSL
// reads the files: a context is kept only if they did not change meanwhile,
// so a kept context is the one those bytes make. File times would be
// cheaper but can repeat: a file rewritten within one clock tick with the
// same size looks unchanged. Only regular files up to 4 MiB are read here:
// anything else (a pipe such as <(...), which can be read once) is left to
// OpenSSL, and the context is not kept.
constexpr std::size_t max_kept_file = 4 << 20;

bool contents(const std::string& path, std::string& out, bool digest) {
  out.clear();
  if (path.empty()) return true;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return false;
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) > max_kept_file) {
    ::close(fd);
    return false;
  }
  EVP_MD_CTX* md = digest ? EVP_MD_CTX_new() : nullptr;
  bool ok = !digest || (md && EVP_DigestInit_ex(md, EVP_sha256(), nullptr) == 1);
  if (!digest) out.reserve(static_cast<std::size_t>(st.st_size));
  char buf[16384];
  std::size_t total = 0;
  while (ok) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ok = n == 0;
      break;
    }
    total += static_cast<std::size_t>(n);
    if (total > max_kept_file) ok = false;
    else if (digest) ok = EVP_DigestUpdate(md, buf, static_cast<std::size_t>(n)) == 1;
    else out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  OPENSSL_cleanse(buf, sizeof buf);
  if (digest) {
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    ok = ok && EVP_DigestFinal_ex(md, h, &len) == 1;
    EVP_MD_CTX_free(md);
    if (ok) out.assign(reinterpret_cast<const char*>(h), len);
  }
  return ok;
}

using file_bytes = std::array<std::string, 3>;

bool read_files(const tls_options& o, file_bytes& f) {
  return contents(o.ca_file, f[0], false) && contents(o.cert_file, f[1], true) && contents(o.key_file, f[2], true);
}

bool same_options(const tls_options& a, const tls_options& b) {
  if (a.ca_file != b.ca_file || a.cert_file != b.cert_file || a.key_file != b.key_file ||
      a.server_name != b.server_name || a.insecure != b.insecure || a.psk.size() != b.psk.size())
    return false;
  for (std::size_t i = 0; i < a.psk.size(); ++i)
    if (a.psk[i].identity != b.psk[i].identity || a.psk[i].key != b.psk[i].key) return false;
  return true;
}

class client_contexts {
public:
  std::shared_ptr<context> get(const tls_options& o, std::error_code& ec) {
    file_bytes files;
    bool stamped = read_files(o, files);
    if (stamped) {
      std::lock_guard lk(mu_);
      for (auto it = kept_.begin(); it != kept_.end(); ++it) {
        if (it->files != files || !same_options(it->ctx->options(), o)) continue;
        auto c = it->ctx;
        std::rotate(it, it + 1, kept_.end()); // most recent last
        return c;
      }
    }
    auto c = context::make(role::client, o, ec); // a file that cannot be read fails here, with its message
    file_bytes after;
    if (!c || !stamped || !read_files(o, after) || after != files) return c; // changed meanwhile: not kept
    std::lock_guard lk(mu_);
    std::erase_if(kept_, [&](const entry& e) { return same_options(e.ctx->options(), o); });
    if (kept_.size() >= max_kept) kept_.erase(kept_.begin());
    kept_.push_back({std::move(files), c});
    return c;
  }

private:
  struct entry {
    file_bytes files; // what the context was built from
    std::shared_ptr<context> ctx;
  };
  static constexpr std::size_t max_kept = 4;
  std::mutex mu_;
  std::vector<entry> kept_;
};

} // namespace

std::shared_ptr<context> context::for_client(const tls_options& o, std::error_code& ec) {
  ec.clear();
  if (o.insecure) return make(role::client, o, ec);
  static auto* kept = new client_contexts; // never destroyed: a dial may run while the process exits
  return kept->get(o, ec);
}

const context* context::of(SSL* ssl) noexcept {
  return static_cast<const context*>(SSL_get_ex_data(ssl, context_index()));
}

void context::attach(SSL* ssl, const context* c) noexcept {
  SSL_set_ex_data(ssl, context_index(), const_cast<context*>(c));
}

context::~context() {
  for (auto& t : tickets_) SSL_SESSION_free(t.second);
  if (ctx_) SSL_CTX_free(ctx_);
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

bool peer_identity_of(SSL* ssl, const context& ctx, std::string& who, std::error_code& ec) {
  if (SSL_session_reused(ssl)) {
    // External PSK. psk_dhe_ke only: the handshake must have used a key share.
    if (SSL_get_negotiated_group(ssl) == 0) {
      set_error_detail("the peer used a pre-shared key without an (EC)DHE key exchange (psk_ke); npipe requires "
                       "psk_dhe_ke");
      ec = make_error_code(errc::access_denied);
      return false;
    }
    if (!resumed_from_ticket(ssl, ctx)) {
      std::size_t i = 0;
      if (ctx.side() == role::server)
        i = reinterpret_cast<std::uintptr_t>(SSL_get_ex_data(ssl, psk_index()));
      else
        i = ctx.options().psk.empty() ? 0 : 1;
      if (i == 0 || i > ctx.options().psk.size()) {
        set_error_detail("TLS resumed a session npipe did not offer");
        ec = make_error_code(errc::access_denied);
        return false;
      }
      who = "psk:" + ctx.options().psk[i - 1].identity;
      return true;
    }
    if (!ctx.resumes()) {
      set_error_detail("TLS resumed a session npipe did not offer");
      ec = make_error_code(errc::access_denied);
      return false;
    }
    // A ticket: the identity is the certificate of the handshake that made it.
  }
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (!cert || SSL_get_verify_result(ssl) != X509_V_OK) {
    set_error_detail("the peer presented neither a verified certificate nor a known pre-shared key");
    ec = make_error_code(errc::access_denied);
    return false;
  }
  if (SSL_session_reused(ssl) && !still_valid(cert)) {
    set_error_detail("the peer resumed a TLS session whose certificate is no longer valid (expired since)");
    ec = make_error_code(errc::access_denied);
    return false;
  }
  BIO* b = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  who.assign(data, static_cast<std::size_t>(std::max(n, 0L)));
  BIO_free(b);
  if (who.empty()) who = "(certificate without a subject)";
  return true;
}

} // namespace npipe::detail::tls
