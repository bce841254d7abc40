// SPDX-License-Identifier: MIT
// `npipe list`: the pipes of this machine (Linux: of one pipe directory).

#include "cli.hpp"

#include <npipe/local_path.hpp>

#include <cerrno>
#include <cstring>
#include <iostream>

#ifndef _WIN32
#include <sys/stat.h>
#endif

namespace npipe_cli {

namespace {

const char* state_text(npipe::local_pipe_state s) {
  switch (s) {
  case npipe::local_pipe_state::live: return "live";
  case npipe::local_pipe_state::live_not_accessible: return "live (not accessible to you)";
  case npipe::local_pipe_state::stale: return "stale";
  case npipe::local_pipe_state::unknown: break;
  }
  return "unknown (cannot probe)";
}

} // namespace

int run_list(const std::string& dir, bool dir_given) {
#ifndef _WIN32
  // The default directory may not exist yet (it is made on first use); one
  // the user named must.
  if (dir_given) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      std::string why = S_ISDIR(st.st_mode) || st.st_mode == 0 ? std::strerror(errno) : "not a directory";
      std::cerr << "npipe: cannot list " << dir << ": " << why << std::endl;
      return 1;
    }
  }
#else
  (void)dir_given; // Windows lists \\.\pipe\, which has no directory to name
#endif
  std::error_code ec;
  auto pipes = npipe::list_local_pipes(ec, dir);
  if (ec) return report(ec, "cannot list " + npipe::pipe_directory(dir));
  std::cout << "pipe directory: " << npipe::pipe_directory(dir) << "\n";
  for (auto& p : pipes) {
    std::string state = state_text(p.state);
    std::cout << state << std::string(state.size() < 6 ? 6 - state.size() : 1, ' ');
    if (p.owner_uid >= 0) std::cout << "uid " << p.owner_uid << "  ";
    std::cout << p.file << "\n";
  }
  return 0;
}

} // namespace npipe_cli
