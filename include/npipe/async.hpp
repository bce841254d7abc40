// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// The asynchronous API, in Asio style: an async client end
/// (`async_connection`) and a multi-client server runtime (`async_server`)
/// that either hands out connections (`async_accept`) or runs a
/// request/reply handler (`serve`). It is built on standalone Asio or on
/// Boost.Asio, whichever npipe was configured with (npipe::net names it;
/// see npipe/detail/net.hpp); below, `asio::` means that one.
///
/// Every `async_*` function takes a completion token: a callback,
/// `asio::use_future`, `asio::use_awaitable`, or anything else Asio accepts.
/// Completions get an npipe::async_error_code: std::error_code with
/// standalone Asio, boost::system::error_code with Boost.Asio.
/// Completions run on the handler's associated executor (by default the
/// object's executor), never inside the initiating call. Operations honour
/// per-operation timeouts (`timed_out`) and Asio cancellation slots
/// (`operation_aborted`, e.g. `asio::experimental::awaitable_operators`).
/// On failure, npipe::last_error_detail() in the completion says why.
///
/// Link the static library (CMake npipe::npipe, pkg-config npipe-static)
/// to use this header. Asio is header-only: its run-time state (the
/// io_context's per-thread call stack, its service registry) has to be one
/// copy per program, and a shared library holding its own copy breaks the
/// first operation that crosses the boundary (and would tie every program to
/// the exact Asio release npipe was built with). The shared library carries
/// the C interface and the blocking C++ API.

#if defined(NPIPE_SHARED)
#error "npipe/async.hpp needs the static npipe library (CMake: npipe::npipe; pkg-config: npipe-static), not npipe::shared: see the comment at the top of npipe/async.hpp"
#endif

#include <npipe/connection.hpp>
#include <npipe/detail/unique_function.hpp>
#include <npipe/error.hpp>
#include <npipe/options.hpp>
#include <npipe/pipe_name.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(any_io_executor.hpp)
#include NPIPE_NET_HEADER(associated_executor.hpp)
#include NPIPE_NET_HEADER(async_result.hpp)
#include NPIPE_NET_HEADER(buffer.hpp)
#include NPIPE_NET_HEADER(executor_work_guard.hpp)
#include NPIPE_NET_HEADER(post.hpp)
#if defined(NPIPE_NET_HAS_CO_AWAIT) // coroutine handlers need a compiler Asio supports them with
#include NPIPE_NET_HEADER(awaitable.hpp)
#include NPIPE_NET_HEADER(co_spawn.hpp)
#include NPIPE_NET_HEADER(detached.hpp)
#endif

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace npipe {

class async_connection;
class async_server;

namespace detail {
class async_pipe;
class async_server_impl;
class session;

void set_error_detail(std::string detail);

template <class... Args>
using completion = unique_function<void(std::error_code, Args...)>;

/// Wraps a completion handler: it runs later on its associated executor
/// (default `io_ex`), keeps that executor busy until then, and sees its own
/// operation's detail in npipe::last_error_detail(): the failure's, or none
/// on success, never one an earlier call left on the handler's thread.
template <class... Args, class Handler>
completion<Args...> bind_completion(Handler&& handler, const net::any_io_executor& io_ex) {
  auto ex = net::get_associated_executor(handler, io_ex);
  return [h = std::forward<Handler>(handler), work = net::make_work_guard(ex)](std::error_code ec,
                                                                                Args... args) mutable {
    std::string why = ec ? npipe::last_error_detail() : std::string();
    auto target = work.get_executor();
    net::post(target, [h = std::move(h), ec, why = std::move(why), ... a = std::move(args)]() mutable {
      set_error_detail(std::move(why));
      std::move(h)(to_net(ec), std::move(a)...);
    });
    work.reset();
  };
}

// Entry points into the library; each takes the caller's cancellation slot.
struct async_ops {
  static void connect(const std::shared_ptr<async_pipe>& p, const pipe_name& name, const client_options& opts,
                      timeout t, detail::cancellation_slot slot, completion<> done);
  static void send(const std::shared_ptr<async_pipe>& p, net::const_buffer msg, timeout t,
                   detail::cancellation_slot slot, completion<std::size_t> done);
  static void receive(const std::shared_ptr<async_pipe>& p, timeout t, detail::cancellation_slot slot,
                      completion<std::vector<std::byte>> done);
  static void read_some(const std::shared_ptr<async_pipe>& p, net::mutable_buffer buf, timeout t,
                        detail::cancellation_slot slot, completion<read_result> done);
  static void transact(const std::shared_ptr<async_pipe>& p, net::const_buffer request, timeout t,
                       detail::cancellation_slot slot, completion<std::vector<std::byte>> done);
  static void flush(const std::shared_ptr<async_pipe>& p, timeout t, detail::cancellation_slot slot,
                    completion<> done);
  static void accept(const std::shared_ptr<async_server_impl>& s, detail::cancellation_slot slot,
                     completion<async_connection> done);
};

template <class T>
struct is_awaitable : std::false_type {};
#if defined(NPIPE_NET_HAS_CO_AWAIT)
template <class T, class E>
struct is_awaitable<net::awaitable<T, E>> : std::true_type {};
#endif
} // namespace detail

/// One end of a pipe, driven asynchronously. Obtain it from
/// async_connect() (client) or async_server::async_accept() (server).
///
/// Several operations may be outstanding at once: sends go out in the order
/// they were started, receives are satisfied in the order they were started.
/// A timed-out or cancelled receive loses nothing: the message stays for the
/// next one. A send that times out before any of it was written sends
/// nothing; one that times out half-written breaks the connection (a torn
/// message would desynchronise the peer).
class async_connection {
public:
  using executor_type = net::any_io_executor;

  /// A closed end bound to `ex`; connect it with async_connect().
  explicit async_connection(const executor_type& ex);
  template <class Context, class = std::enable_if_t<std::is_convertible_v<Context&, net::execution_context&>>>
  explicit async_connection(Context& ctx) : async_connection(executor_type(ctx.get_executor())) {}
  /// The moved-from end keeps its executor and is closed: its operations
  /// complete with not_connected (make a new end to connect again).
  async_connection(async_connection&&) noexcept;
  async_connection& operator=(async_connection&&) noexcept;
  /// Closes the end; pending operations complete with operation_aborted.
  ~async_connection();

  executor_type get_executor() const noexcept { return ex_; }
  /// As connection::is_open(): false once closed, once a send broke the send
  /// side (it failed, or timed out part-way), or once npipe ended the stream.
  bool is_open() const noexcept;
  pipe_type type() const noexcept;
  npipe::read_mode read_mode() const noexcept;
  const peer_identity& peer() const noexcept;
  const pipe_name& name() const noexcept;

  /// Cancel every pending operation (operation_aborted); the end stays open.
  void cancel() noexcept;
  /// Close now; pending operations complete with operation_aborted, and
  /// operations started afterwards with not_connected (one that finds the
  /// peer gone says broken_pipe).
  void close() noexcept;

  /// Connect as a client (CreateFile + WaitNamedPipe): waits up to `t` for
  /// a busy pipe (default defaults::connect_timeout). Completion:
  /// void(async_error_code).
  ///
  /// The initiation holds no reference to the arguments: Asio keeps copies
  /// of them until the operation has started, and the operation copies them
  /// again. In a coroutine, `co_await c.async_connect(name, 5s,
  /// asio::use_awaitable)` and `co_await c.async_connect(name,
  /// npipe::client_options{}, 5s, asio::use_awaitable)` both work with g++ 12
  /// (see client_options). The trap is g++ 12's, for any aggregate with a
  /// destructor built as a temporary inside a co_await expression: it is
  /// destroyed twice. Name such a value before the co_await.
  template <class Token>
  auto async_connect(const pipe_name& name, const client_options& opts, timeout t, Token&& token) {
    return net::async_initiate<Token, void(async_error_code)>(
        [this](auto handler, const pipe_name& n, const client_options& o, timeout to) {
          auto slot = detail::associated_cancellation_slot(handler);
          detail::async_ops::connect(impl_, n, o, to, slot, detail::bind_completion<>(std::move(handler), ex_));
        },
        token, name, opts, t);
  }
  template <class Token>
  auto async_connect(const pipe_name& name, timeout t, Token&& token) {
    return async_connect(name, client_options(), t, std::forward<Token>(token));
  }
  template <class Token>
  auto async_connect(const pipe_name& name, Token&& token) {
    return async_connect(name, client_options(), defaults::connect_timeout, std::forward<Token>(token));
  }

  /// Send one message (message pipe) or these bytes (byte pipe). `msg` must
  /// stay valid until completion. Completion: void(async_error_code, std::size_t).
  template <class Token>
  auto async_send(net::const_buffer msg, timeout t, Token&& token) {
    return net::async_initiate<Token, void(async_error_code, std::size_t)>(
        [this](auto handler, net::const_buffer m, timeout to) {
          auto slot = detail::associated_cancellation_slot(handler);
          detail::async_ops::send(impl_, m, to, slot,
                                  detail::bind_completion<std::size_t>(std::move(handler), ex_));
        },
        token, msg, t);
  }
  template <class Token>
  auto async_send(net::const_buffer msg, Token&& token) {
    return async_send(msg, forever, std::forward<Token>(token));
  }

  /// Receive the next whole message (byte read mode: what is available, up
  /// to 64 KiB). Completion: void(async_error_code, std::vector<std::byte>).
  template <class Token>
  auto async_receive(timeout t, Token&& token) {
    return net::async_initiate<Token, void(async_error_code, std::vector<std::byte>)>(
        [this](auto handler, timeout to) {
          auto slot = detail::associated_cancellation_slot(handler);
          detail::async_ops::receive(impl_, to, slot,
                                     detail::bind_completion<std::vector<std::byte>>(std::move(handler), ex_));
        },
        token, t);
  }
  template <class Token>
  auto async_receive(Token&& token) {
    return async_receive(forever, std::forward<Token>(token));
  }

  /// ReadFile: read into `buf`. In message read mode a message longer than
  /// `buf` fills it and sets read_result::more_data (ERROR_MORE_DATA); the
  /// rest comes with the next read. As in the blocking read(), more_data is
  /// not an error, so coroutines do not throw on it.
  /// Completion: void(async_error_code, read_result).
  template <class Token>
  auto async_read_some(net::mutable_buffer buf, timeout t, Token&& token) {
    return net::async_initiate<Token, void(async_error_code, read_result)>(
        [this](auto handler, net::mutable_buffer b, timeout to) {
          auto slot = detail::associated_cancellation_slot(handler);
          detail::async_ops::read_some(impl_, b, to, slot,
                                       detail::bind_completion<read_result>(std::move(handler), ex_));
        },
        token, buf, t);
  }
  template <class Token>
  auto async_read_some(net::mutable_buffer buf, Token&& token) {
    return async_read_some(buf, forever, std::forward<Token>(token));
  }

  /// TransactNamedPipe: send `request` and receive the reply. Needs a message
  /// pipe in message read mode and no unread message. The request is copied.
  /// Completion: void(async_error_code, std::vector<std::byte>).
  template <class Token>
  auto async_transact(net::const_buffer request, timeout t, Token&& token) {
    return net::async_initiate<Token, void(async_error_code, std::vector<std::byte>)>(
        [this](auto handler, net::const_buffer r, timeout to) {
          auto slot = detail::associated_cancellation_slot(handler);
          detail::async_ops::transact(impl_, r, to, slot,
                                      detail::bind_completion<std::vector<std::byte>>(std::move(handler), ex_));
        },
        token, request, t);
  }
  template <class Token>
  auto async_transact(net::const_buffer request, Token&& token) {
    return async_transact(request, forever, std::forward<Token>(token));
  }

  /// FlushFileBuffers: completes when the peer has read everything sent
  /// before it. Completion: void(async_error_code).
  template <class Token>
  auto async_flush(timeout t, Token&& token) {
    return net::async_initiate<Token, void(async_error_code)>(
        [this](auto handler, timeout to) {
          auto slot = detail::associated_cancellation_slot(handler);
          detail::async_ops::flush(impl_, to, slot, detail::bind_completion<>(std::move(handler), ex_));
        },
        token, t);
  }
  template <class Token>
  auto async_flush(Token&& token) {
    return async_flush(forever, std::forward<Token>(token));
  }

private:
  friend struct detail::async_ops;
  friend class detail::async_server_impl;
  async_connection(const executor_type& ex, std::shared_ptr<detail::async_pipe> impl);
  executor_type ex_;
  std::shared_ptr<detail::async_pipe> impl_;
};

/// One request given to a serve() handler.
class request {
public:
  std::span<const std::byte> data() const noexcept { return data_; }
  std::string_view text() const noexcept {
    return {reinterpret_cast<const char*>(data_.data()), data_.size()};
  }
  std::size_t size() const noexcept { return data_.size(); }
  /// Move the bytes out.
  std::vector<std::byte> take() noexcept { return std::move(data_); }
  /// Who sent it.
  const peer_identity& peer() const noexcept;
  /// Same for every request of one connection, unique within the server.
  std::uint64_t connection_id() const noexcept;

private:
  friend class detail::session;
  request(std::vector<std::byte> d, std::shared_ptr<detail::session> s) : data_(std::move(d)), s_(std::move(s)) {}
  std::vector<std::byte> data_;
  std::shared_ptr<detail::session> s_;
};

/// The answer to one request: send it once, from any thread, now or later.
/// Replies of one connection go out in the order of their requests. A reply
/// destroyed without being sent closes that client's connection (so the
/// client never waits forever); close_connection() does so on purpose.
class reply {
public:
  reply(reply&&) noexcept;
  reply& operator=(reply&&) noexcept;
  ~reply();

  void send(std::vector<std::byte> bytes);
  void send(std::span<const std::byte> bytes) { send(std::vector<std::byte>(bytes.begin(), bytes.end())); }
  void send(std::string_view text) {
    auto b = std::as_bytes(std::span(text.data(), text.size()));
    send(std::vector<std::byte>(b.begin(), b.end()));
  }
  /// Send no reply and drop the client, with `why` in the server's event.
  void close_connection(std::string why = {}) noexcept;
  bool done() const noexcept { return !s_; }
  /// The connection's strand: coroutine handlers run there.
  net::any_io_executor get_executor() const;

private:
  friend class detail::session;
  reply(std::shared_ptr<detail::session> s, std::uint64_t seq) : s_(std::move(s)), seq_(seq) {}
  std::shared_ptr<detail::session> s_;
  std::uint64_t seq_ = 0;
};

/// The general handler form; serve() also takes `R(request)` and
/// `asio::awaitable<R>(request)` where R is bytes or text.
using request_handler = std::function<void(request, reply)>;

/// What serve() tells an observer about each client (npipe serve --verbose).
struct client_event {
  enum class kind { connected, disconnected } what = kind::connected;
  std::uint64_t connection_id = 0;
  peer_identity peer;
  std::uint64_t requests = 0; ///< served on this connection (disconnected)
  std::error_code reason;     ///< why it ended (empty: the client closed)
  std::string detail;
};

struct server_stats {
  std::size_t connections = 0;     ///< connected now (served or accepted)
  std::uint64_t admitted = 0;      ///< since open
  std::uint64_t requests = 0;      ///< handed to the handler since open
  std::size_t in_flight = 0;       ///< requests handed out and not yet answered
  std::size_t queued_bytes = 0;    ///< replies waiting for slow readers
};

/// A multi-client server on an Asio executor (epoll on Linux). Admission
/// (handshake, access policy, instance and per-user limits, waiting
/// clients) happens off the executor, so accepting never blocks serving;
/// each connection is served on its own strand, so any number of threads
/// may run the executor and a slow client delays nobody else.
class async_server {
public:
  using executor_type = net::any_io_executor;

  explicit async_server(const executor_type& ex);
  /// Open at once. @throws std::system_error
  async_server(const executor_type& ex, const pipe_name& name, const async_server_options& opts = {});
  template <class Context, class = std::enable_if_t<std::is_convertible_v<Context&, net::execution_context&>>>
  async_server(Context& ctx, const pipe_name& name, const async_server_options& opts = {})
      : async_server(executor_type(ctx.get_executor()), name, opts) {}
  async_server(async_server&&) noexcept;
  async_server& operator=(async_server&&) noexcept;
  /// Closes at once (no grace).
  ~async_server();

  void open(const pipe_name& name, const async_server_options& opts, std::error_code& ec) noexcept;
  void open(const pipe_name& name, const async_server_options& opts = {});
  bool is_open() const noexcept;
  executor_type get_executor() const noexcept { return ex_; }

  /// Next admitted client (per-connection control).
  /// Completion: void(async_error_code, async_connection).
  template <class Token>
  auto async_accept(Token&& token) {
    return net::async_initiate<Token, void(async_error_code, async_connection)>(
        [this](auto handler) {
          auto slot = detail::associated_cancellation_slot(handler);
          detail::async_ops::accept(impl_, slot, detail::bind_completion<async_connection>(std::move(handler), ex_));
        },
        token);
  }

  /// Serve every client with a request/reply handler, concurrently, within
  /// the limits of async_server_options. The handler is one of
  ///   void(request, reply)            answer now or later via reply
  ///   R(request)                      R: std::vector<std::byte>, std::string...
  ///   asio::awaitable<R>(request)     a coroutine that may await other work
  /// An exception from a handler closes that client's connection only.
  template <class F>
  void serve(F handler) {
    if constexpr (std::is_invocable_v<F&, request, reply>) {
      serve_with(request_handler(std::move(handler)));
    } else {
      static_assert(std::is_invocable_v<F&, request>, "a serve() handler takes (request, reply) or (request)");
      auto f = std::make_shared<F>(std::move(handler));
#if defined(NPIPE_NET_HAS_CO_AWAIT)
      if constexpr (detail::is_awaitable<std::invoke_result_t<F&, request>>::value) {
        serve_with([f](request rq, reply rp) {
          auto ex = rp.get_executor();
          net::co_spawn(ex, run_coroutine(f, std::move(rq), std::move(rp)), net::detached);
        });
      } else
#endif
      {
        serve_with([f](request rq, reply rp) { rp.send(to_bytes((*f)(std::move(rq)))); });
      }
    }
  }

  /// Called for each client that connects and disconnects (serve() only);
  /// set before serve(). Runs on the connection's strand: keep it short,
  /// and do not call stop() or close() from it. No call happens after
  /// stop() or close() has returned.
  void on_client_event(std::function<void(const client_event&)> observer);

  /// Graceful stop: stop accepting and remove the name, stop reading new
  /// requests, let requests in flight finish and their replies go out for up
  /// to `grace`, then close every connection. Blocks until done (at most
  /// about `grace` plus a moment); the executor must keep running meanwhile,
  /// so call it from outside the executor's threads. Idempotent.
  void stop(timeout grace = defaults::stop_grace);
  /// Stop at once: like stop(no_wait).
  void close() noexcept;

  server_stats stats() const;
  const pipe_name& name() const noexcept;
  std::string native_path() const;

private:
  template <class T>
  static std::vector<std::byte> to_bytes(T&& v) {
    using D = std::decay_t<T>;
    if constexpr (std::is_same_v<D, std::vector<std::byte>>) {
      return std::forward<T>(v);
    } else {
      std::string_view s(v);
      auto b = std::as_bytes(std::span(s.data(), s.size()));
      return {b.begin(), b.end()};
    }
  }
#if defined(NPIPE_NET_HAS_CO_AWAIT)
  template <class F>
  static net::awaitable<void> run_coroutine(std::shared_ptr<F> f, request rq, reply rp) {
    try {
      rp.send(to_bytes(co_await (*f)(std::move(rq))));
    } catch (const std::exception& e) {
      rp.close_connection(std::string("the handler threw: ") + e.what());
    } catch (...) {
      rp.close_connection("the handler threw");
    }
  }
#endif
  void serve_with(request_handler h);

  executor_type ex_;
  std::shared_ptr<detail::async_server_impl> impl_;
};

} // namespace npipe
