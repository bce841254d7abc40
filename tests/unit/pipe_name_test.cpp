// SPDX-License-Identifier: MIT
#include <npipe/pipe_name.hpp>
#include <npipe/error.hpp>

#include <gtest/gtest.h>

using npipe::pipe_name;

namespace {

pipe_name ok(std::string_view s) {
  std::error_code ec;
  auto n = pipe_name::parse(s, ec);
  EXPECT_FALSE(ec) << s << ": " << ec.message();
  return n;
}

void bad(std::string_view s) {
  std::error_code ec;
  auto n = pipe_name::parse(s, ec);
  EXPECT_EQ(ec, npipe::errc::invalid_name) << "accepted: " << s;
  EXPECT_TRUE(n.empty());
}

TEST(PipeName, LocalForms) {
  auto n = ok("\\\\.\\pipe\\tpipe");
  EXPECT_TRUE(n.is_local());
  EXPECT_EQ(n.name(), "tpipe");
  EXPECT_EQ(n.str(), "\\\\.\\pipe\\tpipe");
  EXPECT_EQ(ok("//./pipe/tpipe"), n);
  EXPECT_EQ(ok("\\\\.\\PIPE\\tpipe"), n);
  EXPECT_EQ(ok("tpipe"), n) << "a bare NAME is a local pipe";
}

TEST(PipeName, CaseInsensitiveLikeWindows) {
  EXPECT_EQ(ok("\\\\.\\pipe\\TPipe"), ok("\\\\.\\pipe\\tpipe"));
  EXPECT_EQ(ok("\\\\.\\pipe\\TPipe").name(), "TPipe") << "the spelling is kept";
  EXPECT_EQ(ok("\\\\.\\pipe\\TPipe").folded_name(), "tpipe");
  EXPECT_FALSE(ok("a") == ok("b"));
}

TEST(PipeName, CaseInsensitiveAcrossUnicodeBySimpleFolding) {
  EXPECT_EQ(ok("ÜNÏCØDÉ"), ok("ünïcødé"));
  EXPECT_EQ(ok("ÜNÏCØDÉ").folded_name(), "ünïcødé");
  EXPECT_EQ(ok("ÜNÏCØDÉ").name(), "ÜNÏCØDÉ") << "the spelling is kept";
  EXPECT_EQ(ok("\\\\.\\pipe\\ПРИВЕТ"), ok("привет"));
  EXPECT_EQ(ok("ΣΊΣΥΦΟΣ"), ok("σίσυφος")) << "final sigma folds to sigma";
  EXPECT_EQ(ok("ΣΊΣΥΦΟΣ").folded_name(), "σίσυφοσ");
  EXPECT_EQ(ok("\U00010400x"), ok("\U00010428X")) << "Deseret, 4-byte characters";
  // Where simple folding and Windows' uppercase comparison differ (README).
  EXPECT_EQ(ok("\u212Aelvin"), ok("kelvin")) << "KELVIN SIGN folds to k";
  EXPECT_EQ(ok("\u212Aelvin").folded_name(), "kelvin");
  EXPECT_EQ(ok("STRA\u1E9EE"), ok("straße")) << "capital sharp s folds to ß";
  // Simple folding: one character to one, no Turkic rules.
  EXPECT_FALSE(ok("straße") == ok("strasse"));
  EXPECT_FALSE(ok("I") == ok("ı"));
  EXPECT_FALSE(ok("\u0130") == ok("i"));
  EXPECT_FALSE(ok("ü") == ok("u"));
  EXPECT_FALSE(ok("ünïcødé") == ok("ünïcødé2"));
  // The host stays an ASCII name compared without case; the NAME is folded on remote names too.
  EXPECT_EQ(ok("\\\\Server1\\pipe\\ÜNÏ"), ok("\\\\server1\\pipe\\ünï"));
  EXPECT_FALSE(ok("\\\\server1\\pipe\\ünï") == ok("ünï"));
}

TEST(PipeName, FoldingCanChangeTheByteLength) {
  // U+023A is 2 bytes, its folding U+2C65 is 3: limits are in characters.
  std::string upper, lower;
  for (std::size_t i = 0; i < pipe_name::max_name_chars; ++i) {
    upper += "\u023A";
    lower += "\u2C65";
  }
  auto n = ok(upper);
  EXPECT_EQ(n.name().size(), 512u);
  EXPECT_EQ(n.folded_name(), lower);
  EXPECT_EQ(n.folded_name().size(), 768u);
  EXPECT_EQ(n, ok(lower));
  EXPECT_FALSE(n == ok(lower.substr(3)));
  std::string deseret;
  for (std::size_t i = 0; i < pipe_name::max_name_chars; ++i)
    deseret += "\U00010400";
  EXPECT_EQ(ok(deseret).folded_name().size(), 1024u) << "the longest name folds within the hello's 1024 bytes";
}

TEST(PipeName, RemoteForms) {
  auto h = ok("\\\\server1\\pipe\\svc");
  EXPECT_FALSE(h.is_local());
  EXPECT_EQ(h.host(), "server1");
  EXPECT_EQ(h.port(), 0);
  auto p = ok("\\\\10.0.0.7:4455\\pipe\\svc");
  EXPECT_EQ(p.host(), "10.0.0.7");
  EXPECT_EQ(p.port(), 4455);
  EXPECT_EQ(p.str(), "\\\\10.0.0.7:4455\\pipe\\svc");
  auto v6 = ok("\\\\[::1]:99\\pipe\\svc");
  EXPECT_EQ(v6.host(), "::1");
  EXPECT_EQ(v6.port(), 99);
  EXPECT_EQ(v6.str(), "\\\\[::1]:99\\pipe\\svc");
  EXPECT_EQ(ok("\\\\[fe80::1]\\pipe\\x").host(), "fe80::1");
}

TEST(PipeName, RejectsMalformed) {
  bad("");
  bad("\\\\.\\pipe\\");
  bad("\\\\.\\pipe");
  bad("\\\\.\\pip\\x");
  bad("\\\\.\\mailslot\\x");
  bad("\\\\\\pipe\\x");
  bad("\\\\host:0\\pipe\\x");
  bad("\\\\host:65536\\pipe\\x");
  bad("\\\\host:12a\\pipe\\x");
  bad("\\\\ho st\\pipe\\x");
  bad("\\\\[zz::1]\\pipe\\x");
  bad("\\\\[::1\\pipe\\x");
  bad("\\\\-host\\pipe\\x");
}

TEST(PipeName, RejectsBadNameParts) {
  bad("\\\\.\\pipe\\a\\b");
  bad("\\\\.\\pipe\\a/b");
  bad("a/b");
  bad("..");
  bad(".");
  bad("\\\\.\\pipe\\..");
  bad(std::string_view("a\0b", 3));
  bad("tab\there");
  bad("del\x7f");
  bad("\xff\xfe");           // not UTF-8
  bad("\xc0\xaf");           // overlong '/'
  bad("\xed\xa0\x80");       // surrogate
  bad("\xf4\x90\x80\x80");   // above U+10FFFF
  bad("\xe2\x82");           // truncated sequence
}

TEST(PipeName, LengthLimitCountsCharacters) {
  ok(std::string(256, 'a'));
  bad(std::string(257, 'a'));
  std::string euro;
  for (int i = 0; i < 256; ++i) euro += "\xe2\x82\xac";
  EXPECT_EQ(ok(euro).name().size(), 768u) << "256 three-byte characters are fine";
  bad(euro + "x");
}

TEST(PipeName, AllowsOrdinaryWindowsNames) {
  ok("{6F9619FF-8B86-D011-B42D-00C04FC964FF}");
  ok("mojo.1234.5678.9");
  ok("name with spaces");
  ok("ünïcödé");
}

TEST(PipeName, ThrowingConstructor) {
  EXPECT_NO_THROW(pipe_name("\\\\.\\pipe\\x"));
  try {
    pipe_name bad_name("\\\\.\\pipe\\a/b");
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), npipe::errc::invalid_name);
    EXPECT_NE(std::string(e.what()).find("a/b"), std::string::npos) << e.what();
  }
}

} // namespace
