// SPDX-License-Identifier: MIT
#include "remote/tls.hpp"

#include "core/protocol.hpp"

#include "transport/posix_util.hpp"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

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

int context_index() {
  static const int i = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return i;
}
int psk_index() { // on a server session: 1 + the index of the PSK the client used
  static const int i = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return i;
}

const context* context_of(SSL* ssl) {
  return static_cast<const context*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_index()));
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
  const context* c = context_of(ssl);
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
  const context* c = context_of(ssl);
  if (!c) return 1;
  std::string_view wanted(reinterpret_cast<const char*>(id), idlen);
  const auto& keys = c->options().psk;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].identity != wanted) continue;
    *sess = psk_session(ssl, keys[i]);
    if (!*sess) return 0;
    SSL_set_ex_data(ssl, psk_index(), reinterpret_cast<void*>(static_cast<std::uintptr_t>(i + 1)));
    return 1;
  }
  return 1; // unknown identity: no PSK; the handshake then needs a certificate
}

bool is_ip_address(const std::string& s) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
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

std::shared_ptr<context> context::make(role r, const tls_options& o, std::error_code& ec) {
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
  // TLS 1.3 only; no renegotiation (1.3 has none), no session tickets (we do
  // not resume), and never SSL_OP_ALLOW_NO_DHE_KEX: PSKs are psk_dhe_ke only.
  if (!SSL_CTX_set_min_proto_version(x, TLS1_3_VERSION)) return fail("cannot require TLS 1.3");
  SSL_CTX_clear_options(x, SSL_OP_ALLOW_NO_DHE_KEX);
  SSL_CTX_set_options(x, SSL_OP_NO_TICKET);
  if (r == role::server) {
    SSL_CTX_set_num_tickets(x, 0);
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
  SSL_CTX_set_ex_data(x, context_index(), c.get());
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

context::~context() {
  if (ctx_) SSL_CTX_free(ctx_);
}

SSL* new_client_session(const context& ctx, const std::string& host, std::error_code& ec) {
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx.native());
  if (!ssl) {
    ec = invalid("cannot create a TLS session: " + last_error_text());
    return nullptr;
  }
  const std::string& expect = ctx.options().server_name.empty() ? host : ctx.options().server_name;
  bool ok = true;
  if (is_ip_address(expect)) {
    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), expect.c_str()) == 1;
  } else {
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = SSL_set1_host(ssl, expect.c_str()) == 1 && SSL_set_tlsext_host_name(ssl, expect.c_str()) == 1;
  }
  if (!ok) {
    SSL_free(ssl);
    ec = invalid("cannot check the server's name against '" + expect + "': " + last_error_text());
    return nullptr;
  }
  return ssl;
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
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (!cert || SSL_get_verify_result(ssl) != X509_V_OK) {
    set_error_detail("the peer presented neither a verified certificate nor a known pre-shared key");
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

namespace {

// The peer's alert (an OpenSSL reason of SSL_AD_REASON_OFFSET + the alert),
// said as what the peer refused and why, from what this end offered.
// Empty for reasons that are not an alert.
std::string refusal(SSL* ssl, int reason, const std::string& peer, const std::string& text) {
  if (reason < SSL_AD_REASON_OFFSET) return {};
  const context* c = context_of(ssl);
  bool client = !SSL_is_server(ssl);
  const psk_key* offered = client && c && !c->options().psk.empty() ? &c->options().psk.front() : nullptr;
  std::string why;
  switch (reason) {
  case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    why = "it requires a client certificate (or a pre-shared key it knows) and none was given";
    break;
  case SSL_R_TLSV1_ALERT_UNKNOWN_CA: why = "this end's certificate is not signed by a CA it trusts"; break;
  case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED: why = "this end's certificate has expired"; break;
  case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED: why = "this end's certificate is revoked"; break;
  case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
  case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
  case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN: why = "it cannot accept this end's certificate"; break;
  case SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER:
  case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
    // A PSK binder that does not verify is answered with illegal_parameter.
    if (offered)
      why = "its pre-shared key for identity '" + offered->identity + "' differs from this end's (use the same key "
            "file on both ends)";
    break;
  case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
    why = offered ? "it accepts neither the pre-shared key identity '" + offered->identity + "' nor a certificate"
                  : "it found no credentials or parameters it accepts";
    break;
  case SSL_R_TLSV1_ALERT_ACCESS_DENIED: why = "it denies access"; break;
  default: break;
  }
  std::string out = peer + " refused the TLS handshake";
  if (!why.empty()) out += ": " + why;
  return out + " (TLS: " + text + ")";
}

} // namespace

std::error_code handshake_error(SSL* ssl, int ret, const std::string& peer) {
  if (auto answer = plaintext_answer(ssl); answer && *answer == protocol::status::overloaded) {
    ERR_clear_error();
    set_error_detail(peer + " has too many connections still authenticating and let this one go; try again");
    return make_error_code(errc::pipe_busy);
  }
  int err = SSL_get_error(ssl, ret);
  int sys = errno;
  unsigned long first = ERR_peek_error();
  int reason = ERR_GET_REASON(first);
  long verify = SSL_get_verify_result(ssl);
  std::string text = last_error_text("");
  if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK) {
    std::string why = X509_verify_cert_error_string(verify);
    const context* c = context_of(ssl);
    if (!SSL_is_server(ssl) && c && !c->options().psk.empty()) {
      // A server that accepts the offered identity sends no certificate.
      set_error_detail(peer + " does not know the pre-shared key identity '" + c->options().psk.front().identity +
                       "' and presented a certificate instead, which failed verification: " + why +
                       (c->options().ca_file.empty() ? " (no CA is configured to verify it)" : ""));
      return make_error_code(errc::access_denied);
    }
    switch (verify) {
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: why += " (it is not signed by the CA this end trusts)"; break;
    default: break;
    }
    set_error_detail("the certificate of " + peer + " failed verification: " + why);
    return make_error_code(errc::access_denied);
  }
  switch (reason) {
  case SSL_R_WRONG_VERSION_NUMBER:
  case SSL_R_UNSUPPORTED_PROTOCOL:
  case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
  case SSL_R_PACKET_LENGTH_TOO_LONG:
  case SSL_R_RECORD_LENGTH_MISMATCH:
  case SSL_R_HTTP_REQUEST:
    set_error_detail(peer + " does not speak TLS 1.3 (" + text +
                     "); a plaintext gateway needs --insecure on both ends, and TLS 1.2 is not accepted");
    return make_error_code(errc::protocol_error);
  default: break;
  }
  if ((err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN) && text.empty()) {
    set_error_detail(peer + " closed the connection during the TLS handshake (it may not speak TLS, refuse our "
                            "credentials, or be at its connection limit)");
    return make_error_code(errc::broken_pipe, err == SSL_ERROR_SYSCALL ? sys : 0);
  }
  if (err == SSL_ERROR_SYSCALL && text.empty()) return errno_error(sys);
  if (auto r = refusal(ssl, reason, peer, text); !r.empty()) set_error_detail(r);
  else set_error_detail("TLS with " + peer + " failed: " + (text.empty() ? "no reason given" : text));
  return make_error_code(errc::access_denied);
}

bool session_failure(SSL* ssl, int ret, const std::string& peer, std::error_code& ec) {
  int e = SSL_get_error(ssl, ret);
  unsigned long first = ERR_peek_error();
  if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && first == 0) ||
      (e == SSL_ERROR_SSL && ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
    // close_notify, or the TCP connection ended without it. npipe's framing
    // still tells a whole message from a cut one, so this is an end like any other.
    ERR_clear_error();
    return false;
  }
  // An alert from the peer after our handshake finished (TLS 1.3 checks the
  // client's certificate then): say what it refused.
  int reason = ERR_GET_REASON(first);
  std::string text = last_error_text();
  std::string r = refusal(ssl, reason, peer, text);
  set_error_detail(r.empty() ? "TLS with " + peer + " failed: " + text : r);
  ec = make_error_code(r.empty() ? errc::protocol_error : errc::access_denied);
  return true;
}

// ------------------------------------------------------------------ tls_stream

tls_stream::~tls_stream() {
  if (ssl_) SSL_free(ssl_);
  if (fd_ >= 0) ::close(fd_);
}

namespace {
// OpenSSL's socket BIO writes with write(2): a peer that went away would
// raise SIGPIPE and kill the program. This BIO sends with MSG_NOSIGNAL, and
// keeps the first bytes it receives: a gateway that lets a connection go
// before its TLS handshake says so in plaintext (an npipe reply).
struct socket_bio {
  int fd;
  std::array<std::byte, protocol::reply_size> first{};
  std::size_t first_n = 0;
};
socket_bio* data_of(BIO* b) { return static_cast<socket_bio*>(BIO_get_data(b)); }

int bio_write(BIO* b, const char* data, int len) {
  BIO_clear_retry_flags(b);
  for (;;) {
    ssize_t n = ::send(data_of(b)->fd, data, static_cast<std::size_t>(len), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(b);
    return -1;
  }
}
int bio_read(BIO* b, char* data, int len) {
  BIO_clear_retry_flags(b);
  socket_bio* sb = data_of(b);
  for (;;) {
    ssize_t n = ::recv(sb->fd, data, static_cast<std::size_t>(len), 0);
    if (n > 0 && sb->first_n < sb->first.size()) {
      std::size_t k = std::min(sb->first.size() - sb->first_n, static_cast<std::size_t>(n));
      std::memcpy(sb->first.data() + sb->first_n, data, k);
      sb->first_n += k;
    }
    if (n >= 0) return static_cast<int>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(b);
    return -1;
  }
}
long bio_ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }
int bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}
int bio_destroy(BIO* b) {
  delete data_of(b);
  BIO_set_data(b, nullptr);
  return 1;
}
int socket_bio_type() {
  static const int t = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR;
  return t;
}
BIO_METHOD* nosignal_socket() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* x = BIO_meth_new(socket_bio_type(), "npipe socket");
    BIO_meth_set_write(x, bio_write);
    BIO_meth_set_read(x, bio_read);
    BIO_meth_set_ctrl(x, bio_ctrl);
    BIO_meth_set_create(x, bio_create);
    BIO_meth_set_destroy(x, bio_destroy);
    return x;
  }();
  return m;
}
} // namespace

bool attach_socket(SSL* ssl, int fd) noexcept {
  auto* sb = new (std::nothrow) socket_bio{fd};
  if (!sb) return false;
  BIO* bio = BIO_new(nosignal_socket());
  if (!bio) {
    delete sb;
    return false;
  }
  BIO_set_data(bio, sb);
  SSL_set_bio(ssl, bio, bio);
  return true;
}

std::optional<protocol::status> plaintext_answer(SSL* ssl) noexcept {
  BIO* b = ssl ? SSL_get_rbio(ssl) : nullptr;
  if (!b || BIO_method_type(b) != socket_bio_type()) return std::nullopt;
  const socket_bio* sb = data_of(b);
  if (!sb || sb->first_n < sb->first.size()) return std::nullopt;
  protocol::reply r;
  std::error_code ec;
  if (protocol::decode_reply(sb->first, r, ec) != protocol::decode_status::done) return std::nullopt;
  return r.status;
}

bool tls_stream::handshake(deadline dl, std::error_code& ec) noexcept {
  if (!attach_socket(ssl_, fd_)) {
    ec = make_error_code(errc::system_error);
    return false;
  }
  for (;;) {
    ERR_clear_error();
    int r = SSL_connect(ssl_);
    if (r == 1) return true;
    int e = SSL_get_error(ssl_, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      ec = handshake_error(ssl_, r, peer_);
      return false;
    }
    if (!wait_fd(fd_, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, dl, ec)) {
      if (!ec) {
        set_error_detail(peer_ + " did not complete the TLS handshake in time");
        ec = make_error_code(errc::timed_out);
      }
      return false;
    }
  }
}

io_result tls_stream::failed(int ret, bool reading, std::error_code& ec) noexcept {
  int e = SSL_get_error(ssl_, ret);
  switch (e) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE:
    (reading ? read_wants_write_ : write_wants_read_) = reading ? e == SSL_ERROR_WANT_WRITE : e == SSL_ERROR_WANT_READ;
    return {0, io_status::would_block};
  case SSL_ERROR_ZERO_RETURN: return {0, io_status::eof}; // close_notify
  default: break;
  }
  if (!session_failure(ssl_, ret, peer_, ec)) return {0, io_status::eof};
  return {0, io_status::error};
}

io_result tls_stream::read_some(std::span<std::byte> buf, std::error_code& ec) noexcept {
  std::lock_guard lk(mu_);
  if (buf.empty()) return {0, io_status::ok};
  ERR_clear_error();
  std::size_t n = 0;
  int r = SSL_read_ex(ssl_, buf.data(), buf.size(), &n);
  if (r != 1) return failed(r, true, ec);
  read_wants_write_ = false;
  // SSL_read returns one record at a time. Take every record already here,
  // as recv() takes every byte: a flush frame right behind a message must
  // be seen when the message is (its acknowledgement depends on it).
  buffered_ = false;
  while (n < buf.size()) {
    std::size_t more = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl_, buf.data() + n, buf.size() - n, &more) != 1) break; // the next call reports any error
    n += more;
  }
  // A full buffer may leave whole records read ahead inside OpenSSL, which
  // poll() cannot see; else at most part of one is left (the socket has the rest).
  buffered_ = n == buf.size() && SSL_has_pending(ssl_);
  ERR_clear_error();
  return {n, io_status::ok};
}

io_result tls_stream::write_some(std::span<const std::span<const std::byte>> bufs, std::error_code& ec) noexcept {
  std::lock_guard lk(mu_);
  // TLS has no gathered write: a small first piece (a frame header) and what
  // follows go out as one record of at most 16 KiB, else the first piece alone.
  constexpr std::size_t record = 16 * 1024;
  const void* data = nullptr;
  std::size_t len = 0;
  std::size_t first = 0;
  while (first < bufs.size() && bufs[first].empty()) ++first;
  if (first == bufs.size()) return {0, io_status::ok};
  if (bufs[first].size() < record && first + 1 < bufs.size()) {
    if (!gather_) gather_.reset(new std::byte[record]);
    for (std::size_t i = first; i < bufs.size() && len < record; ++i) {
      std::size_t take = std::min(record - len, bufs[i].size());
      std::memcpy(gather_.get() + len, bufs[i].data(), take);
      len += take;
    }
    data = gather_.get();
  } else {
    data = bufs[first].data();
    len = bufs[first].size();
  }
  ERR_clear_error();
  std::size_t n = 0;
  int r = SSL_write_ex(ssl_, data, len, &n);
  if (r == 1) {
    write_wants_read_ = false;
    return {n, io_status::ok};
  }
  auto res = failed(r, false, ec);
  if (res.status == io_status::eof) { // a write cannot meet a clean end: the peer is gone
    ec = make_error_code(errc::broken_pipe);
    res.status = io_status::error;
  }
  return res;
}

bool tls_stream::wait(bool for_write, deadline dl, std::error_code& ec) noexcept {
  short events = 0;
  {
    std::lock_guard lk(mu_);
    if (!for_write && (buffered_ || SSL_pending(ssl_) > 0)) return true; // bytes already inside OpenSSL
    events = for_write ? (write_wants_read_ ? POLLIN : POLLOUT) : (read_wants_write_ ? POLLOUT : POLLIN);
  }
  return wait_fd(fd_, events, dl, ec);
}

void tls_stream::shutdown() noexcept {
  {
    std::lock_guard lk(mu_);
    if (!shut_) {
      shut_ = true;
      ERR_clear_error();
      SSL_shutdown(ssl_); // sends close_notify if it can without blocking
      ERR_clear_error();
    }
  }
  ::shutdown(fd_, SHUT_RDWR);
}

} // namespace npipe::detail::tls
