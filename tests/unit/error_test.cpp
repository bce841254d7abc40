// SPDX-License-Identifier: MIT
#include <npipe/error.hpp>
#include <npipe/pipe_name.hpp>

#include <gtest/gtest.h>

#include <cerrno>

namespace {

TEST(Error, ConditionsCompareRegardlessOfOsCode) {
  auto plain = npipe::make_error_code(npipe::errc::not_found);
  auto with_os = npipe::make_error_code(npipe::errc::not_found, ECONNREFUSED);
  EXPECT_EQ(plain, npipe::errc::not_found);
  EXPECT_EQ(with_os, npipe::errc::not_found);
  EXPECT_NE(with_os, npipe::errc::pipe_busy);
  EXPECT_EQ(npipe::os_error(with_os), ECONNREFUSED);
  EXPECT_EQ(npipe::os_error(plain), 0);
  EXPECT_EQ(npipe::condition_of(with_os), npipe::errc::not_found);
}

TEST(Error, OsCodeAlsoMatchesGenericConditions) {
#ifdef _WIN32
  auto ec = npipe::make_error_code(npipe::errc::access_denied, 5); // ERROR_ACCESS_DENIED
  EXPECT_EQ(ec, std::errc::permission_denied);
#else
  auto ec = npipe::make_error_code(npipe::errc::not_found, ECONNREFUSED);
  EXPECT_EQ(ec, std::errc::connection_refused);
#endif
  EXPECT_NE(npipe::make_error_code(npipe::errc::not_found), std::errc::connection_refused);
}

TEST(Error, MessagesSayWhatToDo) {
  auto ec = npipe::make_error_code(npipe::errc::pipe_busy);
  EXPECT_NE(ec.message().find("busy"), std::string::npos);
  EXPECT_NE(ec.message().find("wait"), std::string::npos);
  auto os = npipe::make_error_code(npipe::errc::access_denied, EACCES);
  EXPECT_NE(os.message().find("OS error 13"), std::string::npos) << os.message();
  EXPECT_STREQ(ec.category().name(), "npipe");
}

TEST(Error, OkIsNoError) {
  EXPECT_FALSE(npipe::make_error_code(npipe::errc::ok));
  EXPECT_EQ(npipe::condition_of({}), npipe::errc::ok);
}

TEST(Error, NamesForEveryCondition) {
  for (int i = 0; i <= static_cast<int>(npipe::errc::system_error); ++i)
    EXPECT_STRNE(npipe::to_string(static_cast<npipe::errc>(i)), "unknown") << i;
  EXPECT_STREQ(npipe::to_string(npipe::errc::more_data), "more_data");
}

// A name that does not parse says why in last_error_detail(); one that
// parses leaves no detail, whatever the previous call said.
TEST(ErrorDetail, ParseFailuresSayWhyAndASuccessLeavesNone) {
  auto why = [](std::string_view text) {
    std::error_code ec;
    npipe::pipe_name::parse(text, ec);
    EXPECT_EQ(ec, npipe::errc::invalid_name) << text;
    return npipe::last_error_detail();
  };
  EXPECT_NE(why("").find("NAME is empty"), std::string::npos) << why("");
  EXPECT_NE(why("..").find("\"..\""), std::string::npos) << why("..");
  EXPECT_NE(why("a\tb").find("control character"), std::string::npos) << why("a\tb");
  EXPECT_NE(why("a/b").find("\\ or /"), std::string::npos) << why("a/b");
  EXPECT_NE(why("\xC3").find("UTF-8"), std::string::npos) << why("\xC3");
  EXPECT_NE(why(std::string(257, 'x')).find("256"), std::string::npos);
  EXPECT_NE(why("\\\\.\\tube\\x").find("\\\\HOST\\pipe\\NAME"), std::string::npos) << why("\\\\.\\tube\\x");
  EXPECT_NE(why("\\\\host:99999\\pipe\\x").find("PORT"), std::string::npos);
  std::error_code ec;
  npipe::pipe_name::parse("fine", ec);
  EXPECT_FALSE(ec);
  EXPECT_EQ(npipe::last_error_detail(), "");
}

} // namespace
