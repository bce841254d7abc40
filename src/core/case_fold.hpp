// SPDX-License-Identifier: MIT
#pragma once
// Unicode simple case folding (CaseFolding.txt statuses C and S, Unicode
// 15.0), the identity of pipe names on every system. Pure code.
//
// Simple folding maps one code point to one code point (full folding, status
// F, would turn "ß" into "ss"; the Turkic rules, status T, are not used).
// The table is src/core/case_fold_table.inc, written by
// scripts/gen-case-fold.py; changing its Unicode version changes which
// names are equal and the Linux file names of some names (see
// docs/decisions.md).

#include <string>
#include <string_view>

namespace npipe::detail {

/// The Unicode version of the folding table, e.g. "15.0".
std::string_view case_fold_unicode_version() noexcept;

/// The simple case folding of `c`; code points without one (and values that
/// are not code points) are returned unchanged.
char32_t simple_case_fold(char32_t c) noexcept;

/// `s` with every code point replaced by its simple case folding. `s` should
/// be valid UTF-8; bytes that are not are copied unchanged. The result can
/// be longer or shorter in bytes than `s` (U+023A, 2 bytes, folds to U+2C65,
/// 3 bytes), never in code points.
std::string case_fold_utf8(std::string_view s);

/// case_fold_utf8(a) == case_fold_utf8(b), without allocating.
bool case_fold_equal(std::string_view a, std::string_view b) noexcept;

} // namespace npipe::detail
