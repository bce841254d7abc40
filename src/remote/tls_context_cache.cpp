// SPDX-License-Identifier: MIT
// The client's TLS contexts, kept between dials (context::for_client in
// tls.hpp): a few configurations, each with what its files held.

#include "remote/tls.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <fcntl.h>
#include <mutex>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace npipe::detail::tls {

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

} // namespace npipe::detail::tls
