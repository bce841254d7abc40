// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// Which Asio npipe's async API is built on: standalone Asio (namespace
/// `asio`) or Boost.Asio (namespace `boost::asio`), chosen when npipe is
/// configured (CMake option `NPIPE_ASIO`, recorded in npipe/detail/net_config.hpp).
/// npipe's code names it `npipe::net`; a program using npipe's async API
/// uses the same Asio npipe was built with.
///
/// Completions get npipe::async_error_code, the error code of that Asio
/// (std::error_code, or boost::system::error_code so that Boost's tokens
/// throw as they do for every Boost.Asio operation); `ec == npipe::errc::x`
/// holds in both. Inside npipe errors are std::error_code: Boost.Asio's are
/// converted at each Asio call (to_std, std_errors, into); standalone Asio's
/// own system category ("asio.system") is mapped by the Linux io_error().

#include <npipe/detail/net_config.hpp>
#include <npipe/error.hpp>

#include <system_error>
#include <utility>
#if NPIPE_ASIO_BOOST
#include <map>
#include <memory>
#include <mutex>
#include <string>
#endif

#if NPIPE_ASIO_BOOST
/// `#include NPIPE_NET_HEADER(io_context.hpp)`: that header of the chosen Asio.
#define NPIPE_NET_HEADER(h) <boost/asio/h>
#include <boost/asio/detail/config.hpp>
#include <boost/asio/version.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>
#define NPIPE_NET_VERSION BOOST_ASIO_VERSION
#if defined(BOOST_ASIO_HAS_CO_AWAIT)
#define NPIPE_NET_HAS_CO_AWAIT 1
#endif
#if defined(BOOST_ASIO_HAS_POSIX_STREAM_DESCRIPTOR)
#define NPIPE_NET_HAS_POSIX_STREAM_DESCRIPTOR 1
#endif
#if defined(BOOST_ASIO_HAS_WINDOWS_OVERLAPPED_PTR)
#define NPIPE_NET_HAS_WINDOWS_OVERLAPPED_PTR 1
#endif
namespace boost::asio {} // declared, whichever headers come next
namespace npipe {
namespace net = ::boost::asio;
}
#else
#define NPIPE_NET_HEADER(h) <asio/h>
#include <asio/detail/config.hpp>
#include <asio/version.hpp>
#include <asio/error_code.hpp>
#define NPIPE_NET_VERSION ASIO_VERSION
#if defined(ASIO_HAS_CO_AWAIT)
#define NPIPE_NET_HAS_CO_AWAIT 1
#endif
#if defined(ASIO_HAS_POSIX_STREAM_DESCRIPTOR)
#define NPIPE_NET_HAS_POSIX_STREAM_DESCRIPTOR 1
#endif
#if defined(ASIO_HAS_WINDOWS_OVERLAPPED_PTR)
#define NPIPE_NET_HAS_WINDOWS_OVERLAPPED_PTR 1
#endif
namespace asio {} // declared, whichever headers come next
namespace npipe {
namespace net = ::asio;
}
#endif

// Per-operation cancellation (cancellation slots, bind_cancellation_slot,
// awaitable operators) came with Asio 1.19 (Boost 1.77). With an older
// Asio nothing can ask an operation to stop but close() and the deadline,
// so npipe's slot is one that is never connected.
#if NPIPE_NET_VERSION >= 101900
#define NPIPE_NET_HAS_CANCELLATION 1
#include NPIPE_NET_HEADER(associated_cancellation_slot.hpp)
#include NPIPE_NET_HEADER(cancellation_signal.hpp)
#include NPIPE_NET_HEADER(cancellation_type.hpp)
#else
#define NPIPE_NET_HAS_CANCELLATION 0
#endif

namespace npipe::detail {

#if NPIPE_ASIO_BOOST
/// The error code Asio hands its handlers: npipe's async completions too.
using net_error_code = ::boost::system::error_code;

/// A std::error_category (npipe's) as a Boost.System one, so that an npipe
/// error travels in a boost::system::error_code and comes back unchanged.
class std_error_category final : public ::boost::system::error_category {
public:
  explicit std_error_category(const std::error_category& c) noexcept : c_(c) {}
  const char* name() const noexcept override { return c_.name(); }
  std::string message(int v) const override { return c_.message(v); }
  const std::error_category& wrapped() const noexcept { return c_; }

private:
  const std::error_category& c_;
};

/// The Boost.System category carrying codes of `c` (one per category, for good).
inline const ::boost::system::error_category& boost_category_of(const std::error_category& c) {
  static std::mutex mu;
  static std::map<const std::error_category*, std::unique_ptr<std_error_category>> all;
  std::lock_guard lk(mu);
  auto& e = all[&c];
  if (!e) e = std::make_unique<std_error_category>(c);
  return *e;
}

/// An Asio error as npipe reports errors: the system's and the generic
/// codes keep their value in std's categories (Boost 1.74 would otherwise
/// wrap them in a category of its own, unequal to std::system_category()),
/// and an npipe error that went out through to_net() comes back as itself.
inline std::error_code to_std(const net_error_code& ec) noexcept {
  if (!ec) return {};
  if (ec.category() == ::boost::system::system_category()) return {ec.value(), std::system_category()};
  if (ec.category() == ::boost::system::generic_category()) return {ec.value(), std::generic_category()};
  if (auto* w = dynamic_cast<const std_error_category*>(&ec.category())) return {ec.value(), w->wrapped()};
#if defined(BOOST_SYSTEM_HAS_SYSTEM_ERROR)
  // Asio's own (eof, not_found, ...): Boost's std::error_category for it,
  // which Boost makes on first use with new, under a lock: if that cannot
  // be had, keep the value and lose the category's words rather than throw
  // (into's destructor and completion handlers call this).
  try {
    return ec;
  } catch (...) {
    return {ec.value(), std::generic_category()};
  }
#else // a Boost.System without std interoperation: keep the value, lose the category's words
  return {ec.value(), std::generic_category()};
#endif
}

/// An npipe error as a Boost.Asio completion reports it.
inline net_error_code to_net(const std::error_code& ec) {
  if (!ec) return {};
  if (ec.category() == std::system_category()) return {ec.value(), ::boost::system::system_category()};
  if (ec.category() == std::generic_category()) return {ec.value(), ::boost::system::generic_category()};
  return {ec.value(), boost_category_of(ec.category())};
}
#else
using net_error_code = std::error_code;
inline std::error_code to_std(const net_error_code& ec) noexcept { return ec; }
inline const std::error_code& to_net(const std::error_code& ec) noexcept { return ec; }
#endif

/// One of Asio's error enumerators (net::error::eof, ...) as to_std() gives it.
template <class E>
std::error_code net_error(E e) {
  return to_std(make_error_code(e));
}

#if NPIPE_ASIO_BOOST
/// An Asio call's error out-parameter landing in a std::error_code, converted
/// by to_std() when the full expression ends: `sock.close(into(ec));`.
class into {
public:
  explicit into(std::error_code& out) noexcept : out_(out) {}
  into(const into&) = delete;
  into& operator=(const into&) = delete;
  ~into() { out_ = to_std(ec_); }
  operator net_error_code&() noexcept { return ec_; }

private:
  std::error_code& out_;
  net_error_code ec_;
};
#else
inline std::error_code& into(std::error_code& ec) noexcept { return ec; }
#endif

#if NPIPE_ASIO_BOOST
/// An Asio completion handler for `h`, which takes std::error_code: Asio's
/// error converted by to_std(), the rest as Asio gives it. For npipe's own
/// handlers, which have no associated executor (they run on the I/O
/// object's), so wrapping loses nothing.
template <class H>
auto std_errors(H h) {
  return [h = std::move(h)](const net_error_code& ec, auto&&... a) mutable {
    h(to_std(ec), std::forward<decltype(a)>(a)...);
  };
}
#else
template <class H>
H std_errors(H h) {
  return h;
}
#endif

#if NPIPE_NET_HAS_CANCELLATION
using cancellation_slot = net::cancellation_slot;
using cancellation_type = net::cancellation_type;
template <class Handler>
cancellation_slot associated_cancellation_slot(const Handler& h) {
  return net::get_associated_cancellation_slot(h);
}
#else
enum class cancellation_type : unsigned { none = 0, terminal = 1, partial = 2, total = 4, all = 7 };
/// An Asio without cancellation slots: nothing is ever connected.
class cancellation_slot {
public:
  template <class F>
  void assign(F&&) noexcept {}
  void clear() noexcept {}
  bool is_connected() const noexcept { return false; }
  bool has_handler() const noexcept { return false; }
};
template <class Handler>
cancellation_slot associated_cancellation_slot(const Handler&) {
  return {};
}
#endif

} // namespace npipe::detail

namespace npipe {

/// The error code npipe's async completions give: std::error_code with
/// standalone Asio, boost::system::error_code with Boost.Asio (so that
/// use_future and use_awaitable throw boost::system::system_error, as
/// every Boost.Asio operation does). Either way an npipe error in it
/// compares equal to its npipe::errc: `ec == npipe::errc::timed_out`.
using async_error_code = detail::net_error_code;

/// What `use_future` and `use_awaitable` throw for a failed npipe async
/// operation: std::system_error with standalone Asio,
/// boost::system::system_error with Boost.Asio. Its code() compares equal
/// to the npipe::errc.
#if NPIPE_ASIO_BOOST
using async_system_error = ::boost::system::system_error;
#else
using async_system_error = std::system_error;
#endif

#if NPIPE_ASIO_BOOST
/// `ec == npipe::errc::pipe_busy` for a Boost.System code from npipe.
inline bool operator==(const ::boost::system::error_code& ec, errc e) {
  return detail::to_std(ec) == make_error_condition(e);
}
/// The npipe condition of a Boost.System code (see condition_of(std::error_code)).
inline errc condition_of(const ::boost::system::error_code& ec) { return condition_of(detail::to_std(ec)); }
/// The OS code inside a Boost.System code from npipe (see os_error(std::error_code)).
inline int os_error(const ::boost::system::error_code& ec) { return os_error(detail::to_std(ec)); }
#endif

} // namespace npipe
