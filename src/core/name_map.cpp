// SPDX-License-Identifier: MIT
#include "core/name_map.hpp"

namespace npipe::detail {
namespace {

bool direct_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '+' ||
         c == '@' || c == '=' || c == ',' || c == '{' || c == '}';
}

} // namespace

std::uint64_t fnv1a64(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string socket_file_name(const pipe_name& name, std::size_t dir_len) {
  std::string folded = name.folded_name();
  bool direct = !folded.empty() && folded.front() != '.' && dir_len + 1 + folded.size() <= max_socket_path;
  for (char c : folded) direct = direct && direct_char(c);
  if (direct) return folded;
  static constexpr char hex[] = "0123456789abcdef";
  std::uint64_t h = fnv1a64(folded);
  std::string out = "#";
  for (int shift = 60; shift >= 0; shift -= 4) out += hex[(h >> shift) & 0xf];
  return out;
}

std::string socket_path(std::string_view dir, const pipe_name& name, std::error_code& ec) {
  ec.clear();
  if (!name.is_local() || name.empty()) {
    ec = make_error_code(errc::invalid_argument);
    return {};
  }
  std::string path(dir);
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  std::string file = socket_file_name(name, path.size());
  if (path.size() + 1 + file.size() > max_socket_path) {
    ec = make_error_code(errc::invalid_name);
    return {};
  }
  path += '/';
  path += file;
  return path;
}

} // namespace npipe::detail
