// SPDX-License-Identifier: MIT
// npipe: the command-line tool. `serve` and `send` are the seed sample's
// NamedPipeServer and NamedPipeClient. Exit codes: 0 success (and --help,
// --version), 1 a failed operation, 2 bad usage, with a one-line message.

#include "cli.hpp"

#include <iostream>
#include <thread>

using namespace npipe_cli;

namespace {

void add_client_command(CLI::App* c, client_args& a) {
  c->add_option("name", a.name, "Pipe name, e.g. \\\\.\\pipe\\tpipe")->required();
  a.message_opt = c->add_option("message", a.text,
                                "Message text, sent as given even when empty; '-' or none reads "
                                "standard input");
  c->add_option("-f,--file", a.file, "Send the contents of this file")->excludes(a.message_opt);
  c->add_option("-t,--timeout", a.timeout_ms,
                "Milliseconds for the whole exchange: a free instance, writing, and the reply")
      ->transform(millis())
      ->capture_default_str();
  c->add_option("--dir", a.dir, "Pipe directory (Linux; default $NPIPE_DIR or /tmp/.npipe)");
  add_server_user_option(c, a.server_user);
  add_tls_options(c, a.tls, false);
}

// CLI11's parse errors as npipe's usage errors: one line on stderr, exit 2.
int usage(CLI::App& app, const CLI::ParseError& e) {
  if (e.get_exit_code() == 0) return app.exit(e); // --help, --version: print and succeed
  std::string what = e.what();
  for (auto& c : what)
    if (c == '\n') c = ' ';
  std::cerr << "npipe: " << what << " (npipe --help shows the usage)" << std::endl;
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"npipe: named pipes with Win32 semantics on Linux and Windows"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("npipe ") + npipe::version);

  serve_args sa;
  sa.threads = std::max(1u, std::thread::hardware_concurrency());
  auto* serve = add_serve_command(app, sa);

  client_args send_a, call_a;
  auto* send = app.add_subcommand("send", "Send a message and print the response (the seed's NamedPipeClient)");
  add_client_command(send, send_a);
  auto* call = app.add_subcommand("call", "Send a message and write the raw response to standard output");
  add_client_command(call, call_a);

  std::string list_dir;
  auto* list = app.add_subcommand("list", "List the pipes on this machine");
  auto* list_dir_opt = list->add_option("--dir", list_dir, "Pipe directory (Linux; default $NPIPE_DIR or /tmp/.npipe)");

  bench_args ba;
  auto* bench = app.add_subcommand("bench", "Measure round trips and throughput against running servers");
  bench->add_option("names", ba.names, "Pipe names")->required();
  bench->add_option("-n,--count", ba.count, "Round trips to time")
      ->transform(whole(10, 10'000'000))
      ->capture_default_str();
  bench->add_option("-s,--size", ba.size, "Request size for the throughput run, bytes")
      ->transform(whole(1, 1u << 30))
      ->capture_default_str();
  bench->add_option("--seconds", ba.seconds, "Length of the throughput run")
      ->transform(seconds_up_to(3600))
      ->capture_default_str();
  bench->add_option("-t,--timeout", ba.timeout_ms, "Milliseconds for connecting and for each round trip")
      ->transform(millis())
      ->capture_default_str();
  bench->add_option("--dir", ba.dir, "Pipe directory (Linux; default $NPIPE_DIR or /tmp/.npipe)");
  add_server_user_option(bench, ba.server_user);
  add_tls_options(bench, ba.tls, false);

  auto* gateway = add_gateway_command(app);

  try {
    app.parse(argc, argv);
    if (gateway && *gateway) return run_gateway();
    if (*bench) return run_bench(ba);
    if (*serve) return run_serve(sa);
    if (*send) return run_send(send_a, false);
    if (*call) return run_send(call_a, true);
    if (*list) return run_list(list_dir, list_dir_opt->count() > 0);
  } catch (const CLI::ParseError& e) {
    return usage(app, e);
  } catch (const usage_error& e) {
    std::cerr << "npipe: " << e.what() << std::endl;
    return 2;
  }
  return 0;
}
