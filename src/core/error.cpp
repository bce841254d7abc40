// SPDX-License-Identifier: MIT
#include <npipe/error.hpp>

#include <string>

namespace npipe {
namespace {

// An npipe code's value: the errc in the low 8 bits, the OS code above them.
constexpr int errc_bits = 8;
constexpr int errc_mask = (1 << errc_bits) - 1;

errc errc_part(int value) noexcept { return static_cast<errc>(value & errc_mask); }
int os_part(int value) noexcept { return value >> errc_bits; }

// What to do about a condition npipe itself found (a code without an OS
// error). Each text has to hold wherever npipe reports the condition bare.
const char* advice(errc e) noexcept {
  switch (e) {
  case errc::ok: return "success";
  case errc::not_found: return "no server is listening on this pipe name; start the server or check the name";
  case errc::pipe_busy: return "all instances of the pipe are busy; wait with a timeout or raise the server's max instances";
  case errc::more_data: return "more data: the buffer held only part of the message; read again for the rest";
  case errc::timed_out: return "timed out: the deadline passed before the peer answered or an instance became free";
  case errc::message_too_large: return "the message is larger than the receiver's limit; raise max_message_size or split the message";
  case errc::name_in_use: return "another live server owns this pipe name; stop it or choose another name";
  case errc::access_denied: return "access denied: the server's access policy, a file's permissions or the TLS peer refused";
  case errc::broken_pipe: return "the other end closed the connection";
  case errc::protocol_error: return "protocol error: the peer sent data that is not npipe's protocol (wrong program or version?)";
  case errc::invalid_name: return "invalid pipe name; use \\\\.\\pipe\\NAME with a NAME of 1-256 characters and no '\\' or '/'";
  case errc::invalid_argument: return "invalid argument";
  case errc::not_connected: return "the pipe is not connected (closed or never opened)";
  case errc::operation_aborted: return "the operation was aborted because the pipe or server was closed";
  case errc::invalid_state: return "the call does not fit the pipe's state; read pending data first or check the read mode";
  case errc::unsafe_directory: return "the pipe directory is unsafe: a component of its path is owned by another user, writable by others without the sticky bit, or an untrusted symbolic link; fix it or set NPIPE_DIR";
  case errc::not_supported: return "the operation is not supported by this build or pipe";
  case errc::system_error: return "system error";
  }
  return "unknown npipe error";
}

// The condition in a few words, for codes that carry an OS error: the OS
// says what happened, and the advice above may not fit (ENOENT on a key
// file is not "no server is listening"; EADDRINUSE on a TCP port is not a
// pipe name in use).
const char* short_name(errc e) noexcept {
  switch (e) {
  case errc::ok: return "success";
  case errc::not_found: return "not found";
  case errc::pipe_busy: return "pipe busy";
  case errc::more_data: return "more data";
  case errc::timed_out: return "timed out";
  case errc::message_too_large: return "message too large";
  case errc::name_in_use: return "in use";
  case errc::access_denied: return "access denied";
  case errc::broken_pipe: return "connection closed";
  case errc::protocol_error: return "protocol error";
  case errc::invalid_name: return "invalid name";
  case errc::invalid_argument: return "invalid argument";
  case errc::not_connected: return "not connected";
  case errc::operation_aborted: return "aborted";
  case errc::invalid_state: return "invalid state";
  case errc::unsafe_directory: return "unsafe directory";
  case errc::not_supported: return "not supported";
  case errc::system_error: return "system error";
  }
  return "unknown npipe error";
}

class npipe_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "npipe"; }
  std::string message(int value) const override {
    int os = os_part(value);
    if (os == 0) return advice(errc_part(value));
    std::string m = short_name(errc_part(value));
    m += " [OS error ";
    m += std::to_string(os);
    m += ": ";
    m += std::system_category().message(os);
    m += "]";
    return m;
  }
  std::error_condition default_error_condition(int value) const noexcept override {
    return {static_cast<int>(errc_part(value)), condition_category()};
  }
  bool equivalent(int value, const std::error_condition& cond) const noexcept override {
    if (cond.category() == condition_category()) return cond.value() == static_cast<int>(errc_part(value));
    if (int os = os_part(value); os != 0) return std::system_category().default_error_condition(os) == cond;
    return false;
  }
};

class npipe_condition_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "npipe"; }
  std::string message(int value) const override { return advice(static_cast<errc>(value)); }
};

} // namespace

const std::error_category& category() noexcept {
  static const npipe_category c;
  return c;
}

const std::error_category& condition_category() noexcept {
  static const npipe_condition_category c;
  return c;
}

std::error_code make_error_code(errc e, int os_code) noexcept {
  if (e == errc::ok) return {};
  return {static_cast<int>(e) | (os_code << errc_bits), category()};
}

std::error_condition make_error_condition(errc e) noexcept { return {static_cast<int>(e), condition_category()}; }

errc condition_of(const std::error_code& ec) noexcept {
  if (!ec) return errc::ok;
  if (ec.category() == category()) return errc_part(ec.value());
  return errc::system_error;
}

int os_error(const std::error_code& ec) noexcept {
  if (ec.category() == category()) return os_part(ec.value());
  if (ec.category() == std::system_category()) return ec.value();
  return 0;
}

const char* to_string(errc e) noexcept {
  switch (e) {
#define NPIPE_ERRC_NAME(x) case errc::x: return #x;
    NPIPE_ERRC_NAME(ok) NPIPE_ERRC_NAME(not_found) NPIPE_ERRC_NAME(pipe_busy) NPIPE_ERRC_NAME(more_data)
    NPIPE_ERRC_NAME(timed_out) NPIPE_ERRC_NAME(message_too_large) NPIPE_ERRC_NAME(name_in_use)
    NPIPE_ERRC_NAME(access_denied) NPIPE_ERRC_NAME(broken_pipe) NPIPE_ERRC_NAME(protocol_error)
    NPIPE_ERRC_NAME(invalid_name) NPIPE_ERRC_NAME(invalid_argument) NPIPE_ERRC_NAME(not_connected)
    NPIPE_ERRC_NAME(operation_aborted) NPIPE_ERRC_NAME(invalid_state) NPIPE_ERRC_NAME(unsafe_directory)
    NPIPE_ERRC_NAME(not_supported) NPIPE_ERRC_NAME(system_error)
#undef NPIPE_ERRC_NAME
  }
  return "unknown";
}

} // namespace npipe
