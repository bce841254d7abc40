// SPDX-License-Identifier: MIT
// Windows local pipes, the names: the pipe directory (\\.\pipe), a name's
// path in it, and list_local_pipes() (every pipe on this machine).

#include "transport/win32_util.hpp"

#include <npipe/local_path.hpp>

#include <algorithm>
#include <utility>

namespace npipe {

std::string pipe_directory(std::string_view) { return "\\\\.\\pipe"; }

std::string local_path(const pipe_name& name, std::error_code& ec, std::string_view) {
  ec.clear();
  return "\\\\.\\pipe\\" + name.name();
}

namespace detail {
std::string narrow_name(const wchar_t* w);
}

std::vector<local_pipe_info> list_local_pipes(std::error_code& ec, std::string_view) {
  ec.clear();
  std::vector<local_pipe_info> out;
  WIN32_FIND_DATAW fd;
  HANDLE f = ::FindFirstFileW(L"\\\\.\\pipe\\*", &fd); // every pipe on this machine, npipe's or not
  if (f == INVALID_HANDLE_VALUE) return out;
  do {
    local_pipe_info info;
    info.file = detail::narrow_name(fd.cFileName);
    info.path = "\\\\.\\pipe\\" + info.file;
    info.live = true; // a pipe name exists only while its server does
    info.state = local_pipe_state::live;
    out.push_back(std::move(info));
  } while (::FindNextFileW(f, &fd));
  ::FindClose(f);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.file < b.file; });
  return out;
}

} // namespace npipe
