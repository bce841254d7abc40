// SPDX-License-Identifier: MIT
#pragma once
// One pipe end driven by Asio, behind npipe::async_connection and the async
// server's sessions. Each system has its own class with the same public
// interface, run on the end's strand:
//   async_pipe_posix.hpp  npipe framing over a Unix socket (epoll)
//   async_pipe_win32.hpp  a Win32 named-pipe handle on the I/O completion port

#if defined(_WIN32)
#include "runtime/async_pipe_win32.hpp"
#else
#include "runtime/async_pipe_posix.hpp"
#endif
