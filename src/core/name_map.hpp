// SPDX-License-Identifier: MIT
#pragma once
// The stable mapping from a local pipe name to a socket file (Linux). Pure code.
//
//   folded = folded_name(): NAME with Unicode simple case folding, as UTF-8
//            (names are case-insensitive; its length in bytes can differ
//            from NAME's, and only an all-ASCII folding can map directly)
//   file   = folded            if it is only [a-z0-9._+@=,{}-], does not start
//                              with '.', and DIR/file fits in sun_path (107 bytes)
//          = "#" + 16 hex digits of FNV-1a-64(folded)   otherwise
//   path   = DIR + "/" + file
//
// The hashed form never truncates; a collision cannot cross-connect two
// names because the handshake carries the full name and the server checks it.

#include <npipe/error.hpp>
#include <npipe/pipe_name.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace npipe::detail {

inline constexpr std::size_t max_socket_path = 107; // sun_path is 108 bytes with the NUL

std::uint64_t fnv1a64(std::string_view s) noexcept;

/// File name of `name` inside a pipe directory of length `dir_len`.
std::string socket_file_name(const pipe_name& name, std::size_t dir_len);

/// Full socket path; errc::invalid_name if even the hashed form does not fit
/// (the directory path is too long), errc::invalid_argument for a remote name.
std::string socket_path(std::string_view dir, const pipe_name& name, std::error_code& ec);

} // namespace npipe::detail
