// SPDX-License-Identifier: MIT
// Taking a name in the Linux pipe directory: probing a socket file for a
// live server, and reclaiming a crashed server's name without a lock. The
// directory's checks are in pipe_dir_posix.cpp.

#include "transport/pipe_dir_posix.hpp"

#include "transport/local_posix.hpp"
#include "transport/posix_util.hpp"

#include <npipe/error.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <thread>
#include <unistd.h>

namespace npipe::detail {

probe_result probe(const std::string& path, peer_identity& owner) {
  sockaddr_un sa;
  socklen_t len = 0;
  if (!make_sockaddr(path, sa, len)) return probe_result::unknown;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return probe_result::unknown;
  probe_result r = probe_result::unknown;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), len) == 0) {
    owner = peer_of(fd);
    r = probe_result::live;
  } else if (errno == EAGAIN) {
    r = probe_result::live; // backlog full: very much alive
  } else if (errno == ECONNREFUSED) {
    r = probe_result::stale;
  } else if (errno == ENOENT) {
    r = probe_result::gone;
  }
  ::close(fd);
  return r;
}

// ------------------------------------------------------------- the name
//
// link(slot, path) takes a free name and never replaces an existing file, so
// a live server's name is never hijacked. A name held by a socket nobody
// listens on (a crashed server's) is reclaimed without a lock: any lock in a
// shared directory is a name or a descriptor another user can take first
// (flock on the directory was, and stopped every restart after a crash). In
// a sticky directory no other user can rename or remove our files, so only
// servers of our user (and root) take part in what follows.
//
// Reclaiming swaps our listening socket into the name with
// renameat2(RENAME_EXCHANGE): atomic, the name is never missing, and what was
// there lands in our private slot, where only we touch it. Then:
//   - it is a socket nobody listens on (probed again at the slot; a socket
//     file never gets a listener back): it is nobody's, we delete it, and the
//     name is ours. A dead file can be taken by one swap only, so one
//     reclaimer wins per crash.
//   - anything else (another server of ours reclaimed first and put its live
//     socket there after we looked, or a file appeared): we give it back.
// Only dead sockets are deleted, so a live one is never lost.
//
// Giving back is one more swap, made when the name holds our socket again:
// it returns what we took and our own. Another loser may have swapped in
// between (it then holds ours, and we would get its); each loser swaps until
// it holds its own, and after a few milliseconds without the name holding
// ours (two losers holding each other's) swaps anyway. A swap keeps every
// socket with exactly one name, so when all losers hold their own the name
// holds the winner's. A loser keeps listening until then, so the name never
// looks dead to a newcomer while the winner's socket is away. Clients that
// connect meanwhile may reach a loser and see broken_pipe.
//
// Renaming the old file aside instead (rename, compare, link back) leaves the
// name missing meanwhile: a third server link()s into it, the live socket
// taken aside cannot go back, and two servers think the name is theirs.
//
// Not covered: a server closing (remove_name: lstat, then unlink, in
// local_posix.cpp) while another reclaims the socket it just closed can
// unlink the newcomer's; a crash in the middle of a same-user race can leave
// a socket kept in the loser's slot directory (never deleted).

namespace {

bool same_file(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

bool exchange(const std::string& a, const std::string& b) {
  return ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0;
}

// A socket nobody listens on, that we may delete.
bool dead_socket(const std::string& path, const struct stat& st) {
  if (!S_ISSOCK(st.st_mode) || (st.st_uid != ::geteuid() && ::geteuid() != 0)) return false;
  peer_identity ignored;
  return probe(path, ignored) == probe_result::stale;
}

bool lost_race(const std::string& path, std::error_code& ec) {
  set_error_detail("another server of this user took " + path + " while we were reclaiming it; try again");
  ec = make_error_code(errc::name_in_use);
  return false;
}

// We hold in `slot` what we took from `path` (not ours, not dead): swap it
// back until we hold our own socket (`mine`) again. True then; false with
// ec when the socket we held could not be given back.
bool give_back(const std::string& slot, const std::string& path, const struct stat& mine, std::error_code& ec) {
  const auto until = clock::now() + std::chrono::seconds(2);
  // 1-8 ms, different for each thread, so that two losers holding each
  // other's sockets do not swap in step.
  auto seed = static_cast<std::uint64_t>(clock::now().time_since_epoch().count()) ^
              (static_cast<std::uint64_t>(::getpid()) << 24) ^ reinterpret_cast<std::uintptr_t>(&ec);
  const auto patience = std::chrono::microseconds(1000 + (seed * 0x9E3779B97F4A7C15ull >> 40) % 7000);
  for (;;) {
    for (auto since = clock::now();;) {
      if (clock::now() >= until) {
        // Never delete what may be a live server's socket: keep it.
        std::string kept = slot.substr(0, slot.rfind('/')) + "/kept";
        ::rename(slot.c_str(), kept.c_str());
        set_error_detail("could not give back the socket taken from " + path +
                         " while racing another server for it; it is kept at " + kept);
        ec = make_error_code(errc::name_in_use);
        return false;
      }
      struct stat at{};
      if (::lstat(path.c_str(), &at) != 0) {
        if (errno != ENOENT) break;
        // The name went (its server closed): put back what we hold, unless
        // something came since (link() never replaces). Our own socket is
        // then gone or elsewhere.
        if (::link(slot.c_str(), path.c_str()) == 0) {
          ::unlink(slot.c_str());
          return lost_race(path, ec);
        }
        continue;
      }
      if (same_file(at, mine) || clock::now() - since >= patience) break;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (!exchange(slot, path) && errno != ENOENT) {
      set_error_detail("cannot give " + path + " back: " + std::strerror(errno));
      ec = errno_error(errno);
      return false;
    }
    struct stat held{};
    if (::lstat(slot.c_str(), &held) != 0) {
      ec = errno_error(errno);
      return false;
    }
    if (same_file(held, mine)) return true;
    if (dead_socket(slot, held)) {
      // What we took died meanwhile (a crash): nobody needs it back. Our own
      // socket is elsewhere; we give up the name rather than claim it.
      ::unlink(slot.c_str());
      return lost_race(path, ec);
    }
  }
}

bool in_use(const pipe_name& name, const std::string& path, probe_result pr, const peer_identity& owner,
            std::error_code& ec) {
  struct stat st{};
  bool have_stat = ::lstat(path.c_str(), &st) == 0;
  std::string who = pr == probe_result::live && owner.pid > 0 ? describe(owner)
                    : have_stat                               ? "uid " + std::to_string(st.st_uid)
                                                              : "an unknown owner";
  set_error_detail("pipe " + name.str() + " is in use by a live server (" + who + ") at " + path);
  ec = make_error_code(errc::name_in_use);
  return false;
}

} // namespace

reclaim_result reclaim(const std::string& slot, const std::string& path, const struct stat& mine, std::error_code& ec) {
  if (!exchange(slot, path)) {
    int e = errno;
    if (e == ENOENT) return reclaim_result::gone;
    if (e == EPERM || e == EACCES) return reclaim_result::given_back; // no longer ours to move: look again
    if (e == EINVAL || e == ENOSYS)
      set_error_detail("cannot reclaim the stale socket " + path +
                       ": this file system cannot swap two names atomically (renameat2 RENAME_EXCHANGE), which "
                       "reclaiming safely needs; no server listens on it, remove it");
    else
      set_error_detail("cannot reclaim the stale socket " + path + ": " + std::strerror(e));
    ec = e == EINVAL || e == ENOSYS ? make_error_code(errc::name_in_use, e) : errno_error(e);
    return reclaim_result::failed;
  }
  struct stat got{};
  if (::lstat(slot.c_str(), &got) != 0) {
    ec = errno_error(errno);
    return reclaim_result::failed;
  }
  if (dead_socket(slot, got)) {
    ::unlink(slot.c_str());
    return reclaim_result::taken;
  }
  return give_back(slot, path, mine, ec) ? reclaim_result::given_back : reclaim_result::failed;
}

bool take_name(const std::string& slot, const std::string& path, const pipe_name& name, dev_t& dev, ino_t& ino,
               std::error_code& ec) {
  // Which file is ours, so close() removes only it; taken before the name,
  // which another server may swap at any moment.
  struct stat mine{};
  if (::lstat(slot.c_str(), &mine) != 0) {
    ec = errno_error(errno);
    return false;
  }
  dev = mine.st_dev;
  ino = mine.st_ino;
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (::link(slot.c_str(), path.c_str()) == 0) return true;
    if (errno != EEXIST) {
      set_error_detail("cannot create " + path + ": " + std::strerror(errno));
      ec = errno_error(errno);
      return false;
    }
    // The name exists. Live server, or a stale file a crash left behind?
    struct stat seen{};
    if (::lstat(path.c_str(), &seen) != 0) {
      if (errno == ENOENT) continue;
      ec = errno_error(errno);
      return false;
    }
    peer_identity owner;
    auto pr = probe(path, owner);
    if (pr == probe_result::gone) continue;
    if (pr != probe_result::stale) return in_use(name, path, pr, owner, ec);
    if (!S_ISSOCK(seen.st_mode)) {
      set_error_detail(path + " exists and is not a socket; remove it or choose another name");
      ec = make_error_code(errc::name_in_use);
      return false;
    }
    if (seen.st_uid != ::geteuid() && ::geteuid() != 0) {
      set_error_detail("stale socket " + path + " belongs to uid " + std::to_string(seen.st_uid) +
                       "; only that user or root can remove it");
      ec = make_error_code(errc::name_in_use);
      return false;
    }
    // Still the file we probed? (Another server may have reclaimed it since.)
    struct stat again{};
    if (::lstat(path.c_str(), &again) != 0 || !same_file(again, seen)) continue;
    switch (reclaim(slot, path, mine, ec)) {
    case reclaim_result::taken: return true;
    case reclaim_result::gone:
    case reclaim_result::given_back: continue; // look again: most likely a live server now
    case reclaim_result::failed: return false;
    }
  }
  set_error_detail("pipe " + name.str() + " keeps reappearing at " + path);
  ec = make_error_code(errc::name_in_use);
  return false;
}

} // namespace npipe::detail
