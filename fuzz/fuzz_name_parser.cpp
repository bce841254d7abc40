// SPDX-License-Identifier: MIT
// Fuzz target: pipe name parsing and the Linux file mapping.
#include "core/name_map.hpp"

#include <npipe/pipe_name.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::error_code ec;
  auto name = npipe::pipe_name::parse(text, ec);
  if (ec) {
    if (!name.empty()) std::abort(); // a failed parse yields nothing
    return 0;
  }
  // Whatever parses must print and re-parse to the same name.
  auto again = npipe::pipe_name::parse(name.str(), ec);
  if (ec || !(again == name)) std::abort();
  if (name.is_local()) {
    auto path = npipe::detail::socket_path("/tmp/.npipe", name, ec);
    if (!ec) {
      if (path.size() > npipe::detail::max_socket_path) std::abort(); // never too long
      if (path.find('/', 12) != std::string::npos) std::abort();      // never outside the directory
      if (path.find('\0') != std::string::npos) std::abort();
    }
  }
  return 0;
}
