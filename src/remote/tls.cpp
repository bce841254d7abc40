// SPDX-License-Identifier: MIT
#include "remote/tls.hpp"

#include "core/protocol.hpp"

#include "transport/posix_util.hpp"

#include <openssl/err.h>

#include <algorithm>
#include <cstdint>

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

int context_index() { // on a session: its context, which the session holds
  static const int i = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return i;
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

int psk_index() {
  static const int i = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return i;
}


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
  if (!set_up_tickets(x, r, c->resumes_, &c->resume_for_)) return fail("cannot set up session tickets");
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
