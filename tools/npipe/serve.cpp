// SPDX-License-Identifier: MIT
// `npipe serve`: the seed's server, as a real one: any number of clients at
// once on the async runtime (epoll on Linux, the I/O completion port on
// Windows); each message gets "<version> | <date time>" (or itself, with
// --echo). A stop request (Ctrl-C, SIGTERM, SIGHUP) stops gracefully: no new
// clients, requests in flight are answered, then every connection closes.

#include "cli.hpp"

#include <npipe/async.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(io_context.hpp)

#include <atomic>
#include <ctime>
#include <iostream>
#include <thread>

namespace npipe_cli {

namespace net = npipe::net;

namespace {

std::string now_text() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
#ifdef _WIN32
  localtime_s(&tm, &t);
#else
  localtime_r(&t, &tm);
#endif
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string describe(const npipe::peer_identity& p) {
  if (p.is_remote()) return "remote " + p.remote_address + " (" + p.user + ")";
  std::string s = "pid " + std::to_string(p.pid);
  if (p.uid >= 0) s += ", uid " + std::to_string(p.uid); // POSIX only
  if (!p.user.empty()) s += " (" + p.user + ")";
  return s;
}

npipe::async_server_options server_options_of(const serve_args& a) {
  npipe::async_server_options o;
  o.type = a.type == "byte" ? npipe::pipe_type::byte : npipe::pipe_type::message;
  o.max_instances = a.max_instances;
  o.max_connections = a.max_connections;
  o.max_per_user = a.max_per_user;
  o.max_in_flight = a.max_in_flight;
  o.max_queued_bytes = a.max_queued;
  o.max_message_size = a.max_message;
  o.idle_timeout = ms(a.idle_ms);
  o.handshake_timeout = ms(a.handshake_ms);
  o.pipe_dir = a.dir;
  o.accept_remote = a.remote.remote || a.remote.accept_remote;
  o.access = parse_access(a.access);
  return o;
}

// The seed's answer: "<version> | <date time>", or the request itself (--echo).
std::string answer(const serve_args& a, std::string_view request) {
  if (!a.quiet) {
    std::lock_guard lk(out_mu);
    std::cout << "Bytes received: " << request.size() << std::endl;
  }
  return a.echo ? std::string(request) : std::string("npipe ") + npipe::version + " | " + now_text();
}

} // namespace

CLI::App* add_serve_command(CLI::App& app, serve_args& sa) {
  auto* serve = app.add_subcommand("serve", "Create a pipe and answer each message (the seed's NamedPipeServer)");
  serve->add_option("name", sa.name, "Pipe name, e.g. \\\\.\\pipe\\tpipe")->required();
  serve->add_flag("--once", sa.once, "Serve one request from one client, then exit (as the seed does)");
  serve->add_flag("--echo", sa.echo, "Reply with the request itself instead of the version and time");
  serve->add_option("--type", sa.type, "Pipe type")->check(CLI::IsMember({"message", "byte"}))->capture_default_str();
  serve->add_option("--max-instances", sa.max_instances, "Most clients at once (1-254; 255: unlimited)")
      ->transform(whole(1, 255))
      ->capture_default_str();
  serve->add_option("--max-connections", sa.max_connections, "Most clients at once, whatever --max-instances says")
      ->transform(whole(1, 1u << 24))
      ->capture_default_str();
  serve->add_option("--threads", sa.threads, "Threads serving clients")
      ->transform(whole(1, 1024))
      ->capture_default_str();
  serve->add_option("--max-in-flight", sa.max_in_flight, "Requests of one client worked on at once")
      ->transform(whole(1, 1u << 20))
      ->capture_default_str();
  serve->add_option("--max-queued", sa.max_queued, "Reply bytes queued for one slow client before it is paused")
      ->transform(whole(1, std::uint64_t{1} << 40))
      ->capture_default_str();
  serve->add_option("--idle-timeout", sa.idle_ms, "Close a client idle this many ms (default, or 'never': never)")
      ->transform(millis(true));
  serve->add_option("--handshake-timeout", sa.handshake_ms, "Close a client that has not said hello within ms")
      ->transform(whole(1, 0x7fffffff))
      ->capture_default_str();
  serve->add_option("--grace", sa.grace_ms, "On a stop request, ms to let requests in flight finish")
      ->transform(millis())
      ->capture_default_str();
  serve->add_flag("-q,--quiet", sa.quiet, "Do not print a line per message");
  serve->add_option("--max-per-user", sa.max_per_user, "Most clients from one user at once (0: no limit)")
      ->transform(whole(0, 1u << 24))
      ->capture_default_str();
  serve->add_option("--max-message", sa.max_message, "Largest accepted message, bytes")
      ->transform(whole(4096, 4294967295u))
      ->capture_default_str();
  serve->add_option("--access", sa.access, "Who may connect: user, everyone, group:NAME or group:GID")
      ->capture_default_str();
  serve->add_option("--dir", sa.dir, "Pipe directory (Linux; default $NPIPE_DIR or /tmp/.npipe)");
  serve->add_flag("-v,--verbose", sa.verbose, "Print a line per client: connected, and disconnected (why)");
  add_remote_options(serve, sa.remote);
  return serve;
}

int run_serve(serve_args& a) {
  auto o = server_options_of(a); // usage errors before anything starts
  auto name = parse_name(a.name);
  check_remote_options(a.remote);
  stop_request stop; // first: the threads started below inherit its signal mask
  net::io_context ctx;
  auto work = net::make_work_guard(ctx);
  npipe::async_server srv(ctx.get_executor());
  std::error_code ec;
  srv.open(name, o, ec);
  if (ec) return report(ec, "cannot serve " + name.str());
  // Every listener is open before anything is announced: a client that saw
  // "Listening on" finds the server, and a taken port fails the command.
  remote_access remote;
  if (a.remote.remote) {
    if (int rc = remote.open(name, a.dir, a.remote, a.verbose); rc != 0) return rc;
  }
  {
    std::lock_guard lk(out_mu);
    std::cout << "Listening on " << name.str() << " (" << srv.native_path() << ")" << std::endl;
  }
  if (a.remote.remote) remote.announce();

  if (a.verbose) {
    srv.on_client_event([](const npipe::client_event& e) {
      std::lock_guard lk(out_mu);
      if (e.what == npipe::client_event::kind::connected) {
        std::cout << "client " << e.connection_id << " connected: " << describe(e.peer) << std::endl;
      } else {
        std::cout << "client " << e.connection_id << " disconnected after " << e.requests << " request"
                  << (e.requests == 1 ? "" : "s");
        if (e.reason) std::cout << ": " << e.reason.message() << (e.detail.empty() ? "" : " (" + e.detail + ")");
        std::cout << std::endl;
      }
    });
  }
  std::atomic<bool> answered{false};
  srv.serve([&](npipe::request r) {
    std::string reply = answer(a, r.text());
    if (a.once && !answered.exchange(true)) stop.trigger();
    return reply;
  });

  std::vector<std::thread> pool;
  for (unsigned i = 0; i < a.threads; ++i)
    pool.emplace_back([&ctx] { ctx.run(); });
  stop.wait();
  remote.close();           // no new remote clients; relayed ones end with their local connections
  srv.stop(ms(a.grace_ms)); // the name goes at once; answers in flight still go out
  work.reset();
  ctx.stop();
  for (auto& t : pool)
    t.join();
  return 0;
}

} // namespace npipe_cli
