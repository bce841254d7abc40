// SPDX-License-Identifier: MIT
// The gateway: one TCP port per host serving every exported pipe by name (as
// SMB does for Windows pipes). Each remote client is authenticated by TLS 1.3,
// says which pipe it wants (npipe's hello), and is relayed byte for byte to
// that local pipe, whose server sees it as a forwarded (remote) client.
//
// Nothing from a client reaches a local pipe before its TLS handshake has
// succeeded, its hello has been read and its pipe name is on the export list.
//
// This file: the listeners, accept loop and threads (gateway_impl) and
// npipe::gateway. Admission is in gateway_admission.cpp, one client's
// session in gateway_session.cpp, load_psk_file in psk_file.cpp.

#include "remote/gateway_admission.hpp"
#include "remote/gateway_session.hpp"
#include "remote/remote.hpp"
#include "remote/tls.hpp"
#include "transport/posix_util.hpp"

#include <npipe/remote.hpp>

#include <npipe/detail/net.hpp>
#include NPIPE_NET_HEADER(dispatch.hpp)
#include NPIPE_NET_HEADER(executor_work_guard.hpp)
#include NPIPE_NET_HEADER(io_context.hpp)
#include NPIPE_NET_HEADER(ip/address.hpp)
#include NPIPE_NET_HEADER(ip/tcp.hpp)
#include NPIPE_NET_HEADER(ip/v6_only.hpp)
#include NPIPE_NET_HEADER(steady_timer.hpp)
#include NPIPE_NET_HEADER(strand.hpp)

#include <atomic>
#include <mutex>
#include <thread>

namespace npipe {
namespace detail {

namespace {

using tcp = net::ip::tcp;

std::string address_of(const tcp::endpoint& ep) {
  return endpoint_text(ep.address().to_string(), ep.port());
}

} // namespace

class gateway_impl {
public:
  bool open(const gateway_options& o, std::error_code& ec) {
    g_ = std::make_shared<gateway_shared>();
    g_->opts = o;
    // Each invalid option is named, with its value and what is allowed.
    if (o.threads < 1) return option_out_of_range("gateway_options::threads", o.threads, "1 or more", ec);
    if (o.max_connections < 1)
      return option_out_of_range("gateway_options::max_connections", o.max_connections, "1 or more", ec);
    if (o.max_unauthenticated < 1)
      return option_out_of_range("gateway_options::max_unauthenticated", o.max_unauthenticated, "1 or more", ec);
    if (o.max_unauthenticated_per_address < 1)
      return option_out_of_range("gateway_options::max_unauthenticated_per_address", o.max_unauthenticated_per_address,
                                 "1 or more", ec);
    if (o.session_resumption.count() < 0 || o.session_resumption.count() > tls::max_ticket_lifetime_s)
      return option_out_of_range("gateway_options::session_resumption", o.session_resumption.count(),
                                 "0 (off) to 604800 seconds (TLS 1.3's limit, 7 days)", ec);
    for (const auto& e : o.exports) {
      if (e == "*") {
        g_->export_all = true;
        continue;
      }
      auto n = pipe_name::parse(e, ec);
      if (ec || !n.is_local()) {
        set_error_detail("cannot export '" + e + "': not a local pipe name");
        ec = make_error_code(errc::invalid_name);
        return false;
      }
      g_->exports.push_back(n.folded_name());
    }
    if (!o.tls.insecure) {
      g_->tls = tls::context::make(tls::role::server, o.tls, ec, o.session_resumption);
      if (!g_->tls) return false;
    } else if (!tls::check_options(tls::role::server, o.tls, ec)) {
      return false;
    }
    std::vector<std::string> addrs = o.listen;
    bool any = addrs.empty();
    if (any) addrs = {"::"};
    std::uint16_t port = o.port;
    for (auto a : addrs) {
      if (a.size() > 2 && a.front() == '[' && a.back() == ']') a = a.substr(1, a.size() - 2);
      net_error_code aec; // compared with Asio's own codes; only its message and value leave
      auto addr = net::ip::make_address(a, aec);
      if (aec) {
        set_error_detail("cannot listen on '" + a + "': not an IP address");
        ec = make_error_code(errc::invalid_argument);
        return false;
      }
      tcp::acceptor acc(io_);
      tcp::endpoint ep(addr, port);
      acc.open(ep.protocol(), aec);
      if (aec && any) { // no IPv6 on this host: every IPv4 interface instead
        ep = tcp::endpoint(net::ip::address_v4::any(), port);
        acc.open(ep.protocol(), aec);
      }
      if (!aec) {
        acc.set_option(net::socket_base::reuse_address(true), aec);
        if (ep.address().is_v6() && any) acc.set_option(net::ip::v6_only(false), aec);
        aec.clear();
        acc.bind(ep, aec);
      }
      if (!aec) acc.listen(net::socket_base::max_listen_connections, aec);
      if (!aec) tune_tcp(acc.native_handle()); // inherited by every accepted socket
      if (aec) {
        set_error_detail("cannot listen on " + address_of(ep) + ": " + aec.message());
        ec = aec == net::error::address_in_use ? make_error_code(errc::name_in_use, aec.value())
                                                : make_error_code(errc::system_error, aec.value());
        return false;
      }
      port = acc.local_endpoint().port(); // port 0: the others listen on the same one
      acceptors_.push_back(std::make_unique<tcp::acceptor>(std::move(acc)));
    }
    port_ = port;
    for (auto& a : acceptors_) accept(*a);
    for (unsigned i = 0; i < o.threads; ++i) threads_.emplace_back([this] { io_.run(); });
    return true;
  }

  ~gateway_impl() { close(); }

  void close() noexcept {
    if (closed_.exchange(true)) return;
    work_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    acceptors_.clear();
    // Pending handlers (and the sessions they own) go when io_ is destroyed.
  }

  std::uint16_t port() const noexcept { return port_; }
  void on_event(std::function<void(const gateway_event&)> f) {
    std::lock_guard lk(g_->ev_mu);
    g_->on_event = std::move(f);
  }
  gateway_stats stats() const noexcept {
    if (!g_) return {};
    return {g_->accepted.load(), g_->dropped.load(), g_->tls_failed.load(), g_->refused.load(),
            g_->relayed.load(),  g_->closed.load(),  g_->active.load(), g_->resumed.load()};
  }
  bool is_open() const noexcept { return !closed_.load() && !acceptors_.empty(); }

private:
  void accept(tcp::acceptor& acc) {
    acc.async_accept(net::make_strand(io_), [this, &acc](const net_error_code& ec, tcp::socket s) {
      if (ec == net::error::operation_aborted || closed_) return;
      if (ec) { // out of descriptors and the like: back off, keep serving the others
        auto t = std::make_shared<net::steady_timer>(io_, std::chrono::milliseconds(100));
        t->async_wait([this, &acc, t](const net_error_code&) { accept(acc); });
        return;
      }
      ++g_->accepted;
      net_error_code pec;
      auto peer = s.remote_endpoint(pec);
      if (pec) { // gone already
        ++g_->tls_failed;
        g_->emit(gateway_event::kind::tls_failed, {}, {}, {}, "left before it could be served");
        s.close(pec);
      } else {
        auto session = std::make_shared<gateway_session>(g_, std::move(s), address_of(peer));
        std::uint64_t seq = 0;
        auto victim = g_->admit(seq, address_key(peer), session);
        if (victim == session) {
          net::dispatch(session->executor(), [session] {
            session->drop("over max_unauthenticated_per_address or max_unauthenticated; told to try again");
          });
        } else {
          if (victim)
            net::dispatch(victim->executor(), [victim] { victim->drop("made room for a newer connection"); });
          session->start(seq);
        }
      }
      accept(acc);
    });
  }

  net::io_context io_;
  net::executor_work_guard<net::io_context::executor_type> work_ = net::make_work_guard(io_);
  std::shared_ptr<gateway_shared> g_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  std::vector<std::thread> threads_;
  std::uint16_t port_ = 0;
  std::atomic<bool> closed_{false};
};

} // namespace detail

gateway::gateway() noexcept = default;
gateway::gateway(const gateway_options& opts) { open(opts); }
gateway::gateway(gateway&&) noexcept = default;
gateway& gateway::operator=(gateway&& o) noexcept {
  if (this != &o) {
    close();
    impl_ = std::move(o.impl_);
  }
  return *this;
}
gateway::~gateway() = default;

void gateway::open(const gateway_options& opts, std::error_code& ec) {
  detail::call_scope scope(ec);
  close();
  auto g = std::make_unique<detail::gateway_impl>();
  if (!g->open(opts, ec)) return;
  impl_ = std::move(g);
}
void gateway::open(const gateway_options& opts) {
  std::error_code ec;
  open(opts, ec);
  if (ec) detail::throw_error(ec, "cannot start the gateway");
}
bool gateway::is_open() const noexcept { return impl_ && impl_->is_open(); }
std::uint16_t gateway::port() const noexcept { return impl_ ? impl_->port() : 0; }
gateway_stats gateway::stats() const noexcept { return impl_ ? impl_->stats() : gateway_stats{}; }
void gateway::on_event(std::function<void(const gateway_event&)> f) {
  if (impl_) impl_->on_event(std::move(f));
}
void gateway::close() noexcept {
  if (impl_) impl_->close();
}

} // namespace npipe
