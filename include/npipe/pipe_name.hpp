// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// Pipe names: `\\.\pipe\NAME` (local) and `\\HOST\pipe\NAME` (remote).

#include <npipe/export.h>

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
/// NAME is 1 to 256 characters (code points) of valid UTF-8 with no control
/// characters, no `\`, no `/`, and is neither `.` nor `..`.
///
/// As on Windows, names compare case-insensitively across Unicode: NAMEs are
/// equal when their Unicode simple case foldings are (CaseFolding.txt,
/// statuses C and S, Unicode 15.0; one table, the same on Linux and Windows).
/// `ÜNÏCØDÉ` equals `ünïcødé`, `ПРИВЕТ` equals `привет`. Simple folding
/// maps one character to one, without the Turkic rules: `ß` does not equal
/// `ss`, `I` folds to `i` and `İ` to itself. Folding can change a NAME's
/// length in bytes (U+023A, 2 bytes, folds to U+2C65, 3 bytes), never in
/// characters. The host is compared ASCII-case-insensitively.
///
/// npipe's own comparisons use this folding on both systems: operator==,
/// folded_name(), and through them the Linux socket file, the Linux server's
/// check of the name a client asked for, and a gateway's export list. On
/// Windows the system itself matches a client's name to a server's (npipe
/// passes name() as given), for npipe and other programs alike, by
/// uppercasing UTF-16 units with a one-to-one table. Names equal there are
/// equal here too, but not the converse: Windows leaves alone the characters
/// that only fold to a letter, and compares exactly outside the BMP. So
/// U+212A KELVIN SIGN and `k`, U+212B ANGSTROM SIGN and `å`, U+2126 OHM SIGN
/// and `ω`, U+00B5 MICRO SIGN and `μ`, U+1E9E `ẞ` and `ß`, final `ς` and `σ`,
/// `ſ` and `s`, `ẛ` and `ṡ`, U+0345 and U+1FBE and `ι`, the Greek symbol
/// forms (`ϐ ϑ ϴ ϰ ϖ ϱ ϕ ϵ`), the titlecase digraphs (`ǅ ǈ ǋ ǲ`), the
/// Cyrillic variants U+1C80 to U+1C88, each with the letters it folds with,
/// and case pairs outside the BMP (Deseret U+10400 and U+10428, ...) are the
/// same pipe on Linux but not on Windows (as tested under Wine 8). Portable programs should spell a name
/// the same way on both ends when it has such characters.
///
/// Remote names are parsed and validated here; whether a remote pipe can be
/// reached depends on the transport (see connect()).
class NPIPE_API pipe_name {
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
  /// The NAME part with Unicode simple case folding (see above), as UTF-8:
  /// the identity used for comparison, for the Linux file mapping and for a
  /// gateway's export list. It can differ from name() in length in bytes.
  std::string folded_name() const;
  /// Host for remote names (without brackets for IPv6); empty when local.
  const std::string& host() const noexcept { return host_; }
  /// Port for remote names when given, else 0.
  std::uint16_t port() const noexcept { return port_; }

  /// The canonical spelling: `\\.\pipe\NAME` or `\\HOST[:PORT]\pipe\NAME`.
  std::string str() const;

  /// Same host (ASCII case-insensitive), port and folded NAME.
  friend NPIPE_API bool operator==(const pipe_name& a, const pipe_name& b) noexcept;

private:
  std::string host_;
  std::uint16_t port_ = 0;
  std::string name_;
};

} // namespace npipe
