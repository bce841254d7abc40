// SPDX-License-Identifier: MIT
#pragma once
// The headers nearly every test file includes, precompiled once for all
// test exes (tests/CMakeLists.txt). Test files still include what they use.

#include <gtest/gtest.h>

#include <npipe/async.hpp>
#include <npipe/npipe.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(io_context.hpp)

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
