// SPDX-License-Identifier: MIT
#include "cli.hpp"

#include <cmath>
#include <cstdlib>
#include <iostream>

namespace npipe_cli {

std::mutex out_mu;

// One rule for every failure: the cause is what npipe knows specifically
// (last_error_detail(): the file, port, peer or limit involved), with the
// OS's own words when the code carries an OS error; only when npipe knows
// nothing more specific does the condition's generic text (ec.message())
// stand in. The generic advice is never printed next to a cause it may not
// fit: "no server is listening" after a missing key file misleads.
int report(const std::error_code& ec, const std::string& what) {
  std::string cause = npipe::last_error_detail();
  int os = npipe::os_error(ec);
  if (cause.empty()) {
    cause = ec.message();
  } else if (os != 0) {
    std::string os_text = std::system_category().message(os);
    if (cause.find(os_text) == std::string::npos) cause += " (" + os_text + ")";
  }
  auto cond = npipe::condition_of(ec);
  std::lock_guard lk(out_mu);
  std::cerr << "npipe: " << what << ": error " << static_cast<int>(cond) << " (" << npipe::to_string(cond)
            << "): " << cause << std::endl;
  return 1;
}

npipe::pipe_name parse_name(const std::string& text) {
  std::error_code ec;
  auto n = npipe::pipe_name::parse(text, ec);
  if (ec) throw usage_error("'" + text + "' is not a pipe name: " + ec.message());
  return n;
}

namespace {

// Decimal digits only, no sign or spaces; false when out of [lo, hi].
bool whole_in(const std::string& s, std::uint64_t lo, std::uint64_t hi) {
  if (s.empty() || s.size() > 20) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  return v >= lo && v <= hi;
}

} // namespace

CLI::Validator whole(std::uint64_t lo, std::uint64_t hi) {
  std::string range = std::to_string(lo) + " to " + std::to_string(hi);
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        return whole_in(s, lo, hi) ? std::string() : "'" + s + "' is not a whole number from " + range;
      },
      "", "whole");
}

CLI::Validator millis(bool never_ok) {
  constexpr std::uint64_t max = 0x7fffffff;
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        if (never_ok && s == "never") {
          s = "-1";
          return {};
        }
        if (whole_in(s, 0, max)) return {};
        return "'" + s + "' is not a number of milliseconds (0 to " + std::to_string(max) + ")" +
               (never_ok ? " or 'never'" : "");
      },
      "", "millis");
}

CLI::Validator seconds_up_to(double max) {
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        char* end = nullptr;
        double v = std::strtod(s.c_str(), &end);
        bool ok = !s.empty() && end == s.c_str() + s.size() && std::isfinite(v) && v > 0 && v <= max &&
                  s.find_first_not_of("0123456789.") == std::string::npos;
        return ok ? std::string()
                  : "'" + s + "' is not a number of seconds above 0 and at most " +
                        std::to_string(static_cast<long>(max));
      },
      "", "seconds");
}

// ------------------------------------------------------------ TLS flags

void add_tls_options(CLI::App* c, tls_args& t, bool listener, bool from_env) {
  auto* g = c->add_option_group("TLS", "Remote pipes: TLS 1.3 with certificates or a pre-shared key");
  auto env = [&](CLI::Option* o, const char* var) {
    if (from_env) o->envname(var);
    t.given.push_back(o);
    return o;
  };
  env(g->add_option("--ca", t.ca,
                    listener ? "CA file: clients must present a certificate it signed"
                             : "CA file that signed the gateway's certificate"),
      "NPIPE_TLS_CA");
  env(g->add_option("--cert", t.cert, "This end's certificate (PEM)"), "NPIPE_TLS_CERT");
  env(g->add_option("--key", t.key, "This end's private key (PEM)"), "NPIPE_TLS_KEY");
  env(g->add_option("--psk-file", t.psk_file, "Pre-shared keys, IDENTITY:HEXKEY per line (chmod 600)"),
      "NPIPE_TLS_PSK_FILE");
  if (!listener) {
    t.given.push_back(
        g->add_option("--psk-identity", t.psk_identity, "Which identity of --psk-file to use (default: the first)"));
    t.given.push_back(
        g->add_option("--server-name", t.server_name, "Name the gateway's certificate must carry (default: HOST)"));
  }
  t.given.push_back(
      g->add_flag("--insecure", t.insecure, "Plaintext TCP: no authentication, no encryption (both ends must say so)"));
}

void tls_from_env(tls_args& t) {
  auto fill = [](std::string& v, const char* var) {
    if (const char* e = std::getenv(var); v.empty() && e) v = e;
  };
  fill(t.ca, "NPIPE_TLS_CA");
  fill(t.cert, "NPIPE_TLS_CERT");
  fill(t.key, "NPIPE_TLS_KEY");
  fill(t.psk_file, "NPIPE_TLS_PSK_FILE");
}

CLI::Option* any_given(const tls_args& t) {
  for (auto* o : t.given)
    if (o->count() > 0) return o;
  return nullptr;
}

// The platform files start and end the wait for a signal or a console event.
void stop_request::wait() {
  std::unique_lock lk(mu_);
  cv_.wait(lk, [this] { return stop_; });
}

void stop_request::trigger() {
  std::lock_guard lk(mu_);
  stop_ = true;
  cv_.notify_all();
}

} // namespace npipe_cli
