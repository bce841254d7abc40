// SPDX-License-Identifier: MIT
#include "core/name_map.hpp"

#include <gtest/gtest.h>

using npipe::pipe_name;
using npipe::detail::socket_path;

namespace {

std::string path(std::string_view dir, std::string_view name) {
  std::error_code ec;
  auto p = socket_path(dir, pipe_name(name), ec);
  EXPECT_FALSE(ec) << ec.message();
  return p;
}

TEST(NameMap, SimpleNamesMapDirectlyAndFoldCase) {
  EXPECT_EQ(path("/tmp/.npipe", "tpipe"), "/tmp/.npipe/tpipe");
  EXPECT_EQ(path("/tmp/.npipe", "TPipe"), "/tmp/.npipe/tpipe");
  EXPECT_EQ(path("/tmp/.npipe/", "a.b-c_d"), "/tmp/.npipe/a.b-c_d");
  EXPECT_EQ(path("/d", "{ABC}"), "/d/{abc}");
}

TEST(NameMap, OtherNamesAreHashedNeverTruncated) {
  auto spaced = path("/d", "with space");
  EXPECT_EQ(spaced.substr(0, 4), "/d/#");
  EXPECT_EQ(spaced.size(), 4u + 16u);
  EXPECT_EQ(path("/d", "With Space"), spaced) << "hashing folds case first";
  EXPECT_NE(path("/d", "with space2"), spaced);
  EXPECT_EQ(path("/d", ".hidden").substr(0, 4), "/d/#") << "no dot files";
  EXPECT_EQ(path("/d", "ünï").substr(0, 4), "/d/#");

  std::string long_name(200, 'a');
  auto p = path("/tmp/.npipe", long_name);
  EXPECT_LE(p.size(), npipe::detail::max_socket_path);
  EXPECT_EQ(p, "/tmp/.npipe/#" + p.substr(13));
  EXPECT_NE(path("/tmp/.npipe", std::string(199, 'a') + "b"), p);
}

TEST(NameMap, MappingIsStable) {
  // Documented in the README; changing these breaks clients of other versions.
  EXPECT_EQ(npipe::detail::fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(npipe::detail::fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(path("/d", "with space"), "/d/#2fa3977cadeceaa7");
}

TEST(NameMap, NonAsciiNamesHashTheirUnicodeFolding) {
  auto lower = path("/d", "ünïcødé");
  EXPECT_EQ(lower.substr(0, 4), "/d/#");
  EXPECT_EQ(path("/d", "ÜNÏCØDÉ"), lower) << "one socket file for every spelling";
  EXPECT_EQ(path("/d", "ÜnÏcØdÉ"), lower);
  EXPECT_EQ(lower, path("/d", "\\\\.\\pipe\\ünïcødé"));
  EXPECT_EQ(path("/d", "ΣΊΣΥΦΟΣ"), path("/d", "σίσυφος"));
  EXPECT_EQ(path("/d", "STRA\u1E9EE"), path("/d", "straße"));
  EXPECT_NE(path("/d", "straße"), path("/d", "strasse"));
  EXPECT_EQ(path("/d", "\u023A x"), path("/d", "\u2C65 x")) << "the folding is 1 byte longer";
  // Stable (documented in the README): FNV-1a-64 of the folded UTF-8.
  EXPECT_EQ(npipe::detail::fnv1a64("ünïcødé"), 0x7fe9369f83b596a0ull);
  EXPECT_EQ(lower, "/d/#7fe9369f83b596a0");
}

TEST(NameMap, NamesThatFoldToTheDirectSetMapDirectly) {
  EXPECT_EQ(path("/d", "\u212Aelvin"), "/d/kelvin") << "KELVIN SIGN folds to ASCII k";
  EXPECT_EQ(path("/d", "\u212Aelvin"), path("/d", "KELVIN"));
  // 90 three-byte KELVIN SIGNs (270 bytes) fold to 90 bytes: short enough to map directly.
  std::string kelvins;
  for (int i = 0; i < 90; ++i)
    kelvins += "\u212A";
  EXPECT_EQ(path("/d", kelvins), "/d/" + std::string(90, 'k'));
}

TEST(NameMap, DirectoryTooLongIsAnError) {
  std::error_code ec;
  socket_path(std::string(100, 'd'), pipe_name("x y"), ec);
  EXPECT_EQ(ec, npipe::errc::invalid_name);
}

TEST(NameMap, RemoteNamesHaveNoLocalPath) {
  std::error_code ec;
  socket_path("/d", pipe_name("\\\\host\\pipe\\x"), ec);
  EXPECT_EQ(ec, npipe::errc::invalid_argument);
}

} // namespace
