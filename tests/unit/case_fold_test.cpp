// SPDX-License-Identifier: MIT
#include "core/case_fold.hpp"
#include "core/utf8.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <vector>
#include <string>

using npipe::detail::case_fold_equal;
using npipe::detail::case_fold_utf8;
using npipe::detail::simple_case_fold;

namespace {

std::string utf8(char32_t c) {
  std::string s;
  npipe::detail::utf8_append(s, c);
  return s;
}

TEST(CaseFold, Ascii) {
  for (char32_t c = 'A'; c <= 'Z'; ++c)
    EXPECT_EQ(simple_case_fold(c), c + 0x20);
  for (char32_t c = 0; c < 0x80; ++c)
    if (c < 'A' || c > 'Z') EXPECT_EQ(simple_case_fold(c), c);
}

TEST(CaseFold, Latin1) {
  EXPECT_EQ(simple_case_fold(U'À'), U'à');
  EXPECT_EQ(simple_case_fold(U'Ü'), U'ü');
  EXPECT_EQ(simple_case_fold(U'Ø'), U'ø');
  EXPECT_EQ(simple_case_fold(U'Þ'), U'þ');
  EXPECT_EQ(simple_case_fold(U'×'), U'×') << "U+00D7 sits between the capitals";
  EXPECT_EQ(simple_case_fold(U'ß'), U'ß') << "ß folds to \"ss\" only in full folding";
  EXPECT_EQ(simple_case_fold(U'ÿ'), U'ÿ');
  EXPECT_EQ(simple_case_fold(U'Ÿ'), U'ÿ') << "U+0178 is outside Latin-1";
  EXPECT_EQ(simple_case_fold(U'µ'), U'μ') << "MICRO SIGN folds to Greek mu";
}

TEST(CaseFold, GreekSigmas) {
  EXPECT_EQ(simple_case_fold(U'Σ'), U'σ');
  EXPECT_EQ(simple_case_fold(U'ς'), U'σ') << "final sigma";
  EXPECT_EQ(simple_case_fold(U'σ'), U'σ');
  EXPECT_EQ(simple_case_fold(U'Ω'), U'ω');
}

TEST(CaseFold, Cyrillic) {
  EXPECT_EQ(simple_case_fold(U'Д'), U'д');
  EXPECT_EQ(simple_case_fold(U'Ё'), U'ё');
  EXPECT_EQ(simple_case_fold(U'Ѣ'), U'ѣ'); // an alternating pair (stride 2)
  EXPECT_EQ(simple_case_fold(U'ѣ'), U'ѣ');
  EXPECT_EQ(case_fold_utf8("ПРИВЕТ"), "привет");
}

TEST(CaseFold, SignsAndCapitalSharpS) {
  EXPECT_EQ(simple_case_fold(U'\u212A'), U'k') << "KELVIN SIGN";
  EXPECT_EQ(simple_case_fold(U'\u212B'), U'å') << "ANGSTROM SIGN";
  EXPECT_EQ(simple_case_fold(U'\u2126'), U'ω') << "OHM SIGN";
  EXPECT_EQ(simple_case_fold(U'\u1E9E'), U'ß') << "LATIN CAPITAL LETTER SHARP S (status S)";
}

TEST(CaseFold, FourByteCasePairs) {
  EXPECT_EQ(simple_case_fold(U'\U00010400'), U'\U00010428') << "Deseret";
  EXPECT_EQ(simple_case_fold(U'\U00010428'), U'\U00010428');
  EXPECT_EQ(simple_case_fold(U'\U0001E900'), U'\U0001E922') << "Adlam";
  EXPECT_EQ(case_fold_utf8("\xF0\x90\x90\x80"), "\xF0\x90\x90\xA8");
}

TEST(CaseFold, FullAndTurkicMappingsAreNotUsed) {
  EXPECT_EQ(simple_case_fold(U'I'), U'i') << "not dotless ı (status T)";
  EXPECT_EQ(simple_case_fold(U'\u0130'), U'\u0130') << "İ has only F and T mappings";
  EXPECT_EQ(simple_case_fold(U'\u0149'), U'\u0149') << "ŉ has only an F mapping";
  EXPECT_EQ(simple_case_fold(U'\u1E9E'), U'ß') << "the S mapping, not F's \"ss\"";
}

TEST(CaseFold, UnchangedCharacters) {
  for (char32_t c : {U'€', U'中', U'\U0001F600', U'ı', U'\U0010FFFF'})
    EXPECT_EQ(simple_case_fold(c), c) << std::hex << static_cast<unsigned>(c);
  EXPECT_EQ(simple_case_fold(U'ſ'), U's') << "LONG S folds to s";
  EXPECT_EQ(simple_case_fold(0xD800), char32_t{0xD800}) << "not a character: unchanged";
  EXPECT_EQ(simple_case_fold(0x110000), char32_t{0x110000});
  EXPECT_EQ(simple_case_fold(0xFFFFFFFF), char32_t{0xFFFFFFFF});
}

TEST(CaseFold, Utf8LengthCanChange) {
  // U+023A (2 bytes) folds to U+2C65 (3 bytes); U+2C64 (3) folds to U+027D (2).
  EXPECT_EQ(simple_case_fold(U'\u023A'), U'\u2C65');
  EXPECT_EQ(case_fold_utf8("\u023A"), "\u2C65");
  EXPECT_EQ(std::string("\u023A").size(), 2u);
  EXPECT_EQ(case_fold_utf8("\u023A").size(), 3u);
  EXPECT_EQ(case_fold_utf8("x\u2C64y"), "x\u027Dy");
  EXPECT_TRUE(case_fold_equal("\u023A", "\u2C65"));
  EXPECT_TRUE(case_fold_equal("a\u023Ab", "A\u2C65B"));
}

TEST(CaseFold, Utf8Strings) {
  EXPECT_EQ(case_fold_utf8(""), "");
  EXPECT_EQ(case_fold_utf8("ÜNÏCØDÉ"), "ünïcødé");
  EXPECT_EQ(case_fold_utf8("ünïcødé"), "ünïcødé");
  EXPECT_EQ(case_fold_utf8("ΣΊΣΥΦΟΣ ς"), "σίσυφοσ σ");
  EXPECT_EQ(case_fold_utf8("\u212Aelvin"), "kelvin");
  EXPECT_EQ(case_fold_utf8("STRA\u1E9EE"), "straße");
  EXPECT_EQ(case_fold_utf8("a\xff"
                           "B\xe2\x82"),
            "a\xff"
            "b\xe2\x82")
      << "invalid bytes are copied";
}

TEST(CaseFold, EqualityIsEqualityOfFoldedStrings) {
  EXPECT_TRUE(case_fold_equal("", ""));
  EXPECT_TRUE(case_fold_equal("ÜNÏCØDÉ", "ünïcødé"));
  EXPECT_TRUE(case_fold_equal("\u212A", "K"));
  EXPECT_TRUE(case_fold_equal("ς", "Σ"));
  EXPECT_FALSE(case_fold_equal("ß", "ss"));
  EXPECT_FALSE(case_fold_equal("a", "ab"));
  EXPECT_FALSE(case_fold_equal("ab", "a"));
  EXPECT_FALSE(case_fold_equal("ü", "u"));
  EXPECT_TRUE(case_fold_equal("\xff", "\xff"));
  EXPECT_FALSE(case_fold_equal("\xff", "\xfe"));
  EXPECT_FALSE(case_fold_equal("\xc3", "\xc3\xbc")) << "a truncated sequence is not the character";
}

// Every simple mapping of the system's CaseFolding.txt (Debian: unicode-data),
// and nothing else: every other scalar value folds to itself.
TEST(CaseFold, MatchesCaseFoldingTxt) {
  const char* path = "/usr/share/unicode/CaseFolding.txt";
  std::ifstream in(path);
  if (!in) GTEST_SKIP() << path << " is absent (Debian package unicode-data)";
  std::string line;
  std::string version;
  std::map<char32_t, char32_t> simple;
  while (std::getline(in, line)) {
    if (version.empty() && line.rfind("# CaseFolding-", 0) == 0) version = line.substr(14);
    line = line.substr(0, line.find('#'));
    if (line.find(';') == std::string::npos) continue;
    std::istringstream fields(line);
    std::string code, status, target;
    std::getline(fields, code, ';');
    std::getline(fields, status, ';');
    std::getline(fields, target, ';');
    status.erase(0, status.find_first_not_of(' '));
    status.erase(status.find_last_not_of(' ') + 1);
    if (status != "C" && status != "S") continue;
    simple[static_cast<char32_t>(std::stoul(code, nullptr, 16))] =
        static_cast<char32_t>(std::stoul(target, nullptr, 16));
  }
  std::string table = std::string(npipe::detail::case_fold_unicode_version()) + ".";
  ASSERT_EQ(version.rfind(table, 0), 0u)
      << path << " is " << version << ", the table is Unicode " << table
      << " (the table is pinned: a new version changes which names are equal; see docs/decisions.md)";
  ASSERT_GT(simple.size(), 1400u);
  // Every scalar value's expected folding, indexed (a map lookup per value
  // was a third of this row's time under the sanitizers).
  std::vector<char32_t> want_of(0x110000);
  for (char32_t c = 0; c < want_of.size(); ++c) want_of[c] = c;
  for (auto [from, to] : simple) want_of[from] = to;
  int failures = 0;
  for (char32_t c = 0; c <= 0x10FFFF; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    char32_t want = want_of[c];
    char32_t got = simple_case_fold(c);
    if (got != want) {
      ADD_FAILURE() << "U+" << std::hex << static_cast<unsigned>(c) << " folds to U+" << static_cast<unsigned>(got)
                    << ", CaseFolding.txt says U+" << static_cast<unsigned>(want);
      if (++failures == 20) return;
      continue;
    }
    // A plain comparison, not EXPECT_EQ: a million gtest assertions took
    // most of this row's time (14 s under TSan).
    std::string want_utf8 = utf8(want);
    if (std::string folded = case_fold_utf8(utf8(c)); folded != want_utf8) {
      ADD_FAILURE() << "U+" << std::hex << static_cast<unsigned>(c) << " as UTF-8 folds to a different string than U+"
                    << static_cast<unsigned>(want);
      if (++failures == 20) return;
    }
  }
}

} // namespace
