// SPDX-License-Identifier: MIT
#include "remote/tls_session.hpp"

#include "transport/posix_util.hpp"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

namespace npipe::detail::tls {

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

std::optional<protocol::status> answer_of(SSL* ssl) noexcept {
  BIO* b = ssl ? SSL_get_rbio(ssl) : nullptr;
  if (!b || BIO_method_type(b) != socket_bio_type()) return std::nullopt;
  const socket_bio* sb = data_of(b);
  if (!sb || sb->first_n < sb->first.size()) return std::nullopt;
  protocol::reply r;
  std::error_code ec;
  if (protocol::decode_reply(sb->first, r, ec) != protocol::decode_status::done) return std::nullopt;
  return r.status;
}

// The peer's alert (an OpenSSL reason of SSL_AD_REASON_OFFSET + the alert),
// said as what the peer refused and why, from what this end offered.
// Empty for reasons that are not an alert.
std::string refusal(SSL* ssl, int reason, const std::string& peer, const std::string& text) {
  if (reason < SSL_AD_REASON_OFFSET) return {};
  const context* c = context::of(ssl);
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

std::error_code handshake_error(SSL* ssl, int ret, const std::string& peer) {
  if (auto answer = answer_of(ssl); answer && *answer == protocol::status::overloaded) {
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
    const context* c = context::of(ssl);
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

// A plaintext recv/send (again after EINTR): done with its count in `n`,
// `blocked` for EAGAIN, else the end.
template <class Call>
io plaintext(Call call, std::size_t& n, io blocked) {
  ssize_t r;
  do r = call();
  while (r < 0 && errno == EINTR);
  if (r > 0) {
    n = static_cast<std::size_t>(r);
    return io::done;
  }
  return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? blocked : io::end;
}

} // namespace

// ------------------------------------------------------------------ session

session::~session() {
  if (ssl_) SSL_free(ssl_);
}

// An SSL for `ctx` on the socket, or false with ec and detail.
bool session::open(std::shared_ptr<const context> ctx, std::error_code& ec) {
  ERR_clear_error();
  ctx_ = std::move(ctx);
  ssl_ = SSL_new(ctx_->native());
  if (ssl_ && attach_socket(ssl_, fd_)) {
    context::attach(ssl_, ctx_.get());
    return true;
  }
  set_error_detail(ssl_ ? "cannot set up TLS" : "cannot create a TLS session: " + last_error_text());
  ec = make_error_code(ssl_ ? errc::system_error : errc::invalid_argument);
  if (ssl_) SSL_free(std::exchange(ssl_, nullptr));
  return false;
}

bool session::start_client(std::shared_ptr<const context> c, const std::string& host, const std::string& where,
                           std::error_code& ec) {
  if (!open(std::move(c), ec)) return false;
  const context& ctx = *ctx_;
  const std::string& expect = ctx.options().server_name.empty() ? host : ctx.options().server_name;
  bool ok = true;
  unsigned char ip[16];
  if (::inet_pton(AF_INET, expect.c_str(), ip) == 1 || ::inet_pton(AF_INET6, expect.c_str(), ip) == 1) {
    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), expect.c_str()) == 1;
  } else {
    SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = SSL_set1_host(ssl_, expect.c_str()) == 1 && SSL_set_tlsext_host_name(ssl_, expect.c_str()) == 1;
  }
  if (!ok) {
    SSL_free(std::exchange(ssl_, nullptr));
    set_error_detail("cannot check the server's name against '" + expect + "': " + last_error_text());
    ec = make_error_code(errc::invalid_argument);
    return false;
  }
  if (ctx.resumes()) {
    // A ticket is for the gateway and the name it was verified as.
    ticket_key_ = where + " " + expect;
    SSL_set_ex_data(ssl_, ticket_key_index(), &ticket_key_);
    if (SSL_SESSION* t = ctx.take_ticket(ticket_key_)) {
      SSL_set_session(ssl_, t);
      SSL_SESSION_free(t);
    }
  }
  SSL_set_connect_state(ssl_);
  return true;
}

bool session::start_server(std::shared_ptr<const context> ctx, std::error_code& ec) {
  if (!open(std::move(ctx), ec)) return false;
  SSL_set_accept_state(ssl_);
  return true;
}

// A TLS call that returned `ret` != 1: what it waits for, or the end and why.
io session::result(int ret, bool handshaking) {
  switch (SSL_get_error(ssl_, ret)) {
  case SSL_ERROR_WANT_READ: return io::want_read;
  case SSL_ERROR_WANT_WRITE: return io::want_write;
  default: break;
  }
  if (handshaking) end_ec_ = handshake_error(ssl_, ret, peer_);
  else if (!session_failure(ssl_, ret, peer_, end_ec_)) end_ec_ = {};
  failed_ = static_cast<bool>(end_ec_);
  end_detail_ = failed_ ? last_error_detail() : std::string();
  return io::end;
}

// A call after an error: the same end, its detail again this thread's.
io session::again() {
  set_error_detail(end_detail_);
  return io::end;
}

io session::handshake() {
  if (!ssl_) return io::done;
  if (failed_) return again();
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  return r == 1 ? io::done : result(r, true);
}

io session::read(std::byte* p, std::size_t cap, std::size_t& n) {
  if (failed_) return again();
  if (!ssl_) return plaintext([&] { return ::recv(fd_, p, cap, MSG_DONTWAIT); }, n, io::want_read);
  ERR_clear_error();
  int r = SSL_read_ex(ssl_, p, cap, &n);
  return r == 1 ? io::done : result(r, false);
}

io session::write(const std::byte* p, std::size_t len, std::size_t& n) {
  if (failed_) return again();
  if (!ssl_) return plaintext([&] { return ::send(fd_, p, len, MSG_NOSIGNAL | MSG_DONTWAIT); }, n, io::want_write);
  ERR_clear_error();
  int r = SSL_write_ex(ssl_, p, len, &n);
  return r == 1 ? io::done : result(r, false);
}

io session::read_all(std::byte* p, std::size_t cap, std::size_t& n) {
  io r = read(p, cap, n);
  if (r != io::done) return r;
  while (n < cap) {
    std::size_t more = 0;
    if (read(p + n, cap - n, more) != io::done) break;
    n += more;
  }
  return io::done;
}

io session::write_gathered(std::span<const std::span<const std::byte>> bufs, std::size_t& n) {
  constexpr std::size_t record = 16 * 1024;
  std::size_t first = 0;
  while (first < bufs.size() && bufs[first].empty()) ++first;
  n = 0;
  if (first == bufs.size()) return io::done;
  if (bufs[first].size() >= record || first + 1 == bufs.size()) return write(bufs[first].data(), bufs[first].size(), n);
  if (!gather_) gather_.reset(new std::byte[record]);
  std::size_t len = 0;
  for (std::size_t i = first; i < bufs.size() && len < record; ++i) {
    std::size_t take = std::min(record - len, bufs[i].size());
    std::memcpy(gather_.get() + len, bufs[i].data(), take);
    len += take;
  }
  return write(gather_.get(), len, n);
}

void session::shutdown() noexcept {
  if (!ssl_) return;
  ERR_clear_error();
  SSL_shutdown(ssl_); // close_notify, if the socket takes it now
  ERR_clear_error();
}

std::optional<protocol::status> session::plaintext_answer() const noexcept { return answer_of(ssl_); }

} // namespace npipe::detail::tls
