// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// Pipe names: `\\.\pipe\NAME` (local) and `\\HOST\pipe\NAME` (remote).

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace npipe {

/// A parsed, validated pipe name.
///
/// Accepted spellings (backslashes or forward slashes, "pipe" in any case):
///   - `\\.\pipe\NAME`            a pipe on this machine
///   - `\\HOST\pipe\NAME`         a pipe on another machine (HOST: a host name,
///                                an IPv4 address, or an IPv6 address in brackets)
///   - `\\HOST:PORT\pipe\NAME`    the same on a non-default port
///   - `NAME`                     shorthand for `\\.\pipe\NAME`
///
/// NAME is 1 to 256 characters of valid UTF-8 with no control characters,
/// no `\`, no `/`, and is neither `.` nor `..`. As on Windows, names compare
/// case-insensitively (ASCII letters are folded).
///
/// Remote names are parsed and validated here; whether a remote pipe can be
/// reached depends on the transport (see connect()).
class pipe_name {
public:
  /// Longest NAME, in characters.
  static constexpr std::size_t max_name_chars = 256;

  pipe_name() = default;

  /// Parse `text`. @throws std::system_error with errc::invalid_name.
  explicit pipe_name(std::string_view text);

  /// Parse `text`; on failure sets `ec` (errc::invalid_name) and returns an
  /// empty pipe_name.
  static pipe_name parse(std::string_view text, std::error_code& ec);

  /// True for a name on this machine (`\\.\pipe\...`).
  bool is_local() const noexcept { return host_.empty(); }
  /// True when this object holds a parsed name.
  bool empty() const noexcept { return name_.empty(); }

  /// The NAME part, as given (case kept).
  const std::string& name() const noexcept { return name_; }
  /// The NAME part with ASCII letters folded to lower case: the identity
  /// used for comparison and for the Linux file mapping.
  std::string folded_name() const;
  /// Host for remote names (without brackets for IPv6); empty when local.
  const std::string& host() const noexcept { return host_; }
  /// Port for remote names when given, else 0.
  std::uint16_t port() const noexcept { return port_; }

  /// The canonical spelling: `\\.\pipe\NAME` or `\\HOST[:PORT]\pipe\NAME`.
  std::string str() const;

  friend bool operator==(const pipe_name& a, const pipe_name& b) noexcept;

private:
  std::string host_;
  std::uint16_t port_ = 0;
  std::string name_;
};

} // namespace npipe
