// SPDX-License-Identifier: MIT
#pragma once
// Strict UTF-8 (no overlongs, no surrogates, max U+10FFFF): validation,
// decoding and encoding.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace npipe::detail {

/// Decodes the code point starting at `s[i]` into `cp`; returns its length
/// in bytes (1 to 4), or 0 if the bytes there are not valid UTF-8.
inline std::size_t utf8_decode(std::string_view s, std::size_t i, char32_t& cp) noexcept {
  auto b = static_cast<unsigned char>(s[i]);
  std::size_t len;
  if (b < 0x80) {
    cp = b;
    return 1;
  }
  if (b < 0xC2 || b > 0xF4) return 0; // a continuation byte, an overlong lead, or above U+10FFFF
  if (b <= 0xDF) {
    len = 2;
    cp = b & 0x1F;
  } else if (b <= 0xEF) {
    len = 3;
    cp = b & 0x0F;
  } else {
    len = 4;
    cp = b & 0x07;
  }
  if (len > s.size() - i) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

/// Number of code points in `s`, or nullopt if `s` is not valid UTF-8.
inline std::optional<std::size_t> utf8_length(std::string_view s) noexcept {
  std::size_t count = 0;
  char32_t cp;
  for (std::size_t i = 0; i < s.size(); ++count) {
    auto len = utf8_decode(s, i, cp);
    if (len == 0) return std::nullopt;
    i += len;
  }
  return count;
}

/// Appends the UTF-8 encoding of `cp` (a scalar value: at most U+10FFFF, not
/// a surrogate) to `out`.
inline void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

} // namespace npipe::detail
