// SPDX-License-Identifier: MIT
#include "core/case_fold.hpp"

#include "core/utf8.hpp"

#include <algorithm>
#include <cstdint>
#include <iterator>

namespace npipe::detail {
namespace {

// c in [first, last] with (c - first) % stride == 0 folds to c + delta.
struct fold_run {
  char32_t first;
  char32_t last;
  std::uint8_t stride;
  std::int32_t delta;
};

#include "core/case_fold_table.inc"

// One code point (or one byte that is not valid UTF-8, as a value above
// U+10FFFF so it never equals a code point) from s[i]; advances i.
char32_t next_folded(std::string_view s, std::size_t& i) noexcept {
  char32_t cp;
  std::size_t len = utf8_decode(s, i, cp);
  if (len == 0) return 0x110000 + static_cast<unsigned char>(s[i++]);
  i += len;
  return simple_case_fold(cp);
}

} // namespace

std::string_view case_fold_unicode_version() noexcept { return case_fold_unicode_version_text; }

char32_t simple_case_fold(char32_t c) noexcept {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 0x20 : c;
  // The last run whose first code point is <= c.
  auto it = std::upper_bound(std::begin(case_fold_runs), std::end(case_fold_runs), c,
                             [](char32_t v, const fold_run& r) { return v < r.first; });
  if (it == std::begin(case_fold_runs)) return c;
  const fold_run& r = *std::prev(it);
  if (c > r.last || (c - r.first) % r.stride != 0) return c;
  return static_cast<char32_t>(static_cast<std::int32_t>(c) + r.delta);
}

std::string case_fold_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp;
    std::size_t len = utf8_decode(s, i, cp);
    if (len == 0) {
      out += s[i++];
      continue;
    }
    utf8_append(out, simple_case_fold(cp));
    i += len;
  }
  return out;
}

bool case_fold_equal(std::string_view a, std::string_view b) noexcept {
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size())
    if (next_folded(a, i) != next_folded(b, j)) return false;
  return i == a.size() && j == b.size();
}

} // namespace npipe::detail
