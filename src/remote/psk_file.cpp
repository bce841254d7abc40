// SPDX-License-Identifier: MIT
// load_psk_file: pre-shared keys for remote pipes from a file of
// IDENTITY:HEXKEY lines that only its owner may read.

#include "remote/tls.hpp"
#include "transport/posix_util.hpp"
#include "transport/transport.hpp"

#include <npipe/remote.hpp>

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <fstream>
#include <string>
#include <vector>

namespace npipe {

std::vector<psk_key> load_psk_file(const std::string& path, std::error_code& ec) {
  detail::call_scope scope(ec);
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    detail::set_error_detail("cannot read the PSK file " + path);
    ec = detail::errno_error(errno);
    return {};
  }
  if (st.st_mode & 077) {
    detail::set_error_detail("the PSK file " + path + " is readable by other users; chmod 600 it");
    ec = make_error_code(errc::access_denied);
    return {};
  }
  std::ifstream in(path);
  if (S_ISDIR(st.st_mode) || !in) { // a directory, or not readable by this user
    int e = S_ISDIR(st.st_mode) ? EISDIR : errno;
    detail::set_error_detail("cannot read the PSK file " + path);
    ec = detail::errno_error(e);
    return {};
  }
  std::vector<psk_key> out;
  std::string line;
  int no = 0;
  auto hexval = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  while (std::getline(in, line)) {
    ++no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    auto colon = line.rfind(':');
    bool ok = colon != std::string::npos && colon > 0 && (line.size() - colon - 1) % 2 == 0;
    psk_key k;
    if (ok) {
      k.identity = line.substr(0, colon);
      for (std::size_t i = colon + 1; ok && i < line.size(); i += 2) {
        int hi = hexval(line[i]), lo = hexval(line[i + 1]);
        ok = hi >= 0 && lo >= 0;
        k.key.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
      }
    }
    if (!ok) {
      detail::set_error_detail(path + ":" + std::to_string(no) + ": expected IDENTITY:HEXKEY");
      ec = make_error_code(errc::invalid_argument);
      return {};
    }
    out.push_back(std::move(k));
  }
  if (out.empty()) {
    detail::set_error_detail("the PSK file " + path + " holds no key");
    ec = make_error_code(errc::invalid_argument);
    return {};
  }
  tls_options check;
  check.psk = out;
  check.ca_file = "-"; // only the keys are checked here
  if (!detail::tls::check_options(detail::tls::role::client, check, ec)) return {};
  return out;
}

std::vector<psk_key> load_psk_file(const std::string& path) {
  std::error_code ec;
  auto v = load_psk_file(path, ec);
  if (ec) detail::throw_error(ec, "cannot load pre-shared keys");
  return v;
}

} // namespace npipe
