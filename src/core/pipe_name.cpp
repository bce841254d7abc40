// SPDX-License-Identifier: MIT
#include <npipe/error.hpp>
#include <npipe/pipe_name.hpp>

#include "core/case_fold.hpp"
#include "core/error_detail.hpp"
#include "core/utf8.hpp"

#include <charconv>

namespace npipe {
namespace {

bool is_sep(char c) noexcept { return c == '\\' || c == '/'; }

char fold(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (fold(a[i]) != fold(b[i])) return false;
  return true;
}

// Why `n` is not a valid NAME, or nullptr if it is.
const char* name_part_problem(std::string_view n) noexcept {
  if (n.empty()) return "NAME is empty";
  if (n == "." || n == "..") return "NAME cannot be \".\" or \"..\"";
  for (char c : n) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return "NAME contains a control character";
    if (c == '\\' || c == '/') return "NAME contains a \\ or /";
  }
  auto chars = detail::utf8_length(n);
  if (!chars) return "NAME is not valid UTF-8";
  if (*chars > pipe_name::max_name_chars) return "NAME is longer than 256 characters";
  return nullptr;
}

bool valid_hostname(std::string_view h) noexcept {
  if (h.empty() || h.size() > 253) return false;
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
              c == '_';
    if (!ok) return false;
  }
  return h.front() != '-' && h.front() != '.';
}

bool valid_ipv6(std::string_view h) noexcept {
  if (h.size() < 2 || h.size() > 45) return false;
  int colons = 0;
  for (char c : h) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
    if (!ok) return false;
    colons += c == ':';
  }
  return colons >= 2;
}

bool parse_port(std::string_view s, std::uint16_t& port) noexcept {
  unsigned v = 0;
  auto [p, e] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (e != std::errc{} || p != s.data() + s.size() || v == 0 || v > 65535) return false;
  port = static_cast<std::uint16_t>(v);
  return true;
}

// Parses HOST or HOST:PORT or [V6] or [V6]:PORT. "." means local.
bool parse_host(std::string_view h, std::string& host, std::uint16_t& port) noexcept {
  port = 0;
  if (h == ".") {
    host.clear();
    return true;
  }
  if (!h.empty() && h.front() == '[') {
    auto close = h.find(']');
    if (close == std::string_view::npos) return false;
    auto v6 = h.substr(1, close - 1);
    auto rest = h.substr(close + 1);
    if (!valid_ipv6(v6)) return false;
    if (!rest.empty() && (rest.front() != ':' || !parse_port(rest.substr(1), port))) return false;
    host.assign(v6);
    return true;
  }
  auto colon = h.find(':');
  auto name = h.substr(0, colon);
  if (colon != std::string_view::npos && !parse_port(h.substr(colon + 1), port)) return false;
  if (!valid_hostname(name)) return false;
  host.assign(name);
  return true;
}

} // namespace

pipe_name::pipe_name(std::string_view text) {
  std::error_code ec;
  *this = parse(text, ec);
  if (ec) detail::throw_error(ec, "cannot parse pipe name '" + std::string(text) + "'");
}

pipe_name pipe_name::parse(std::string_view text, std::error_code& ec) {
  detail::call_scope scope(ec);
  pipe_name out;
  auto fail = [&](const char* why) {
    detail::set_error_detail(std::string("not a pipe name: ") + why);
    ec = make_error_code(errc::invalid_name);
    return pipe_name{};
  };
  if (text.size() >= 2 && is_sep(text[0]) && is_sep(text[1])) {
    auto rest = text.substr(2);
    std::size_t i = 0;
    while (i < rest.size() && !is_sep(rest[i])) ++i;
    auto host = rest.substr(0, i);
    const char* form = "expected \\\\.\\pipe\\NAME or \\\\HOST\\pipe\\NAME";
    if (i == rest.size()) return fail(form);
    rest = rest.substr(i + 1);
    if (rest.size() < 5 || !iequals(rest.substr(0, 4), "pipe") || !is_sep(rest[4])) return fail(form);
    auto name = rest.substr(5);
    if (!parse_host(host, out.host_, out.port_))
      return fail("HOST is not a host name, an IPv4 address or an IPv6 address in brackets, with an optional "
                  ":PORT of 1..65535");
    if (auto why = name_part_problem(name)) return fail(why);
    out.name_.assign(name);
    return out;
  }
  if (auto why = name_part_problem(text)) return fail(why);
  out.name_.assign(text);
  return out;
}

std::string pipe_name::folded_name() const { return detail::case_fold_utf8(name_); }

std::string pipe_name::str() const {
  std::string s = "\\\\";
  if (host_.empty()) {
    s += '.';
  } else {
    bool v6 = host_.find(':') != std::string::npos;
    if (v6) s += '[';
    s += host_;
    if (v6) s += ']';
    if (port_) s += ':' + std::to_string(port_);
  }
  s += "\\pipe\\";
  s += name_;
  return s;
}

bool operator==(const pipe_name& a, const pipe_name& b) noexcept {
  return a.port_ == b.port_ && iequals(a.host_, b.host_) && detail::case_fold_equal(a.name_, b.name_);
}

} // namespace npipe
