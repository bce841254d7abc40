// SPDX-License-Identifier: MIT
// The Windows pieces of `npipe`: console stop events, and what Windows does
// without (POSIX users and groups, remote access: the TLS gateway is Linux-only).

#include "cli.hpp"

#include <windows.h>

namespace npipe_cli {

// ------------------------------------------------------------ stop events

// Ctrl-C, Ctrl-Break and closing the console arrive on a thread of the
// system's; they trigger the one stop_request alive at the time.
struct stop_request::impl {};

namespace {
std::mutex console_mu;
stop_request* console_stop = nullptr;

BOOL WINAPI on_console_event(DWORD) {
  std::lock_guard lk(console_mu);
  if (console_stop) console_stop->trigger();
  return TRUE;
}
} // namespace

stop_request::stop_request() {
  std::lock_guard lk(console_mu);
  console_stop = this;
  ::SetConsoleCtrlHandler(on_console_event, TRUE);
}

stop_request::~stop_request() {
  std::lock_guard lk(console_mu);
  ::SetConsoleCtrlHandler(on_console_event, FALSE);
  console_stop = nullptr;
}

// ------------------------------------------------------------ users and groups

npipe::access_policy parse_access(const std::string& text) {
  if (text == "user") return npipe::access_policy::current_user();
  if (text == "everyone") return npipe::access_policy::everyone();
  if (text.rfind("group:", 0) == 0)
    throw usage_error("--access " + text + ": group policies name POSIX groups; on Windows use user or everyone");
  throw usage_error("--access takes user or everyone on Windows, not '" + text + "'");
}

void add_server_user_option(CLI::App*, std::string&) {} // the pipe's DACL protects the name

std::uint32_t parse_user(const std::string& text) {
  throw usage_error("--require-server-user " + text + " names a POSIX user; Windows has none");
}

int client_options_of(const npipe::pipe_name&, const std::string& dir, const tls_args&,
                      const std::optional<std::uint32_t>&, npipe::client_options& o) {
  o.pipe_dir = dir;
  return 0; // a remote name: the library says remote pipes are not in this build
}

// ------------------------------------------------------------ no remote access

struct remote_access::impl {};
remote_access::remote_access() = default;
remote_access::~remote_access() = default;
int remote_access::open(const npipe::pipe_name&, const std::string&, const remote_args&, bool) { return 0; }
void remote_access::announce() {}
void remote_access::close() {}

void add_remote_options(CLI::App*, remote_args&) {}
void check_remote_options(remote_args&) {}

CLI::App* add_gateway_command(CLI::App&) { return nullptr; }
int run_gateway() { return 0; }

} // namespace npipe_cli
