// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// Which Asio npipe's async API is built on: standalone Asio (namespace
/// `asio`) or Boost.Asio (namespace `boost::asio`), chosen when npipe is
/// configured (CMake option `NPIPE_ASIO`, recorded in npipe/detail/net_config.hpp).
/// npipe's code names it `npipe::net`; a program using npipe's async API
/// uses the same Asio npipe was built with.
///
/// Whichever it is, npipe's handlers receive `std::error_code`, never
/// `boost::system::error_code`: errors are npipe's (`npipe::errc`) or the
/// system's (`std::system_category()`), compared the same way in both builds.

#include <npipe/detail/net_config.hpp>

#include <system_error>

#if NPIPE_ASIO_BOOST
/// `#include NPIPE_NET_HEADER(io_context.hpp)`: that header of the chosen Asio.
#define NPIPE_NET_HEADER(h) <boost/asio/h>
#include <boost/asio/version.hpp>
#include <boost/system/error_code.hpp>
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
namespace npipe {
namespace net = ::boost::asio;
}
#else
#define NPIPE_NET_HEADER(h) <asio/h>
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
/// The error code Asio hands its own handlers.
using net_error_code = ::boost::system::error_code;

/// An Asio error as npipe reports errors: the system's and the generic
/// codes keep their value in std's categories (Boost 1.74 would otherwise
/// wrap them in a category of its own, unequal to std::system_category()).
inline std::error_code to_std(const net_error_code& ec) noexcept {
  if (!ec) return {};
  if (ec.category() == ::boost::system::system_category()) return {ec.value(), std::system_category()};
  if (ec.category() == ::boost::system::generic_category()) return {ec.value(), std::generic_category()};
  return ec; // Asio's own (eof, not_found, ...): Boost's std::error_category for it
}
#else
using net_error_code = std::error_code;
inline std::error_code to_std(const net_error_code& ec) noexcept { return ec; }
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
