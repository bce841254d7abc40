// SPDX-License-Identifier: MIT
// The Linux pipe directory: its safety checks and taking a name in it.

#include "transport/pipe_dir_posix.hpp"

#include "core/name_map.hpp"
#include "transport/local_posix.hpp"
#include "transport/posix_util.hpp"

#include <npipe/error.hpp>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <grp.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

namespace npipe::detail {

bool make_sockaddr(const std::string& path, sockaddr_un& sa, socklen_t& len) {
  if (path.size() > max_socket_path) return false;
  std::memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

// ------------------------------------------------------------ the directory
//
// Whoever can change any directory on the way to a socket can replace the
// socket (or the whole pipe directory) and receive what clients send. So the
// path is walked from / down, each component opened relative to its parent
// with O_PATH|O_NOFOLLOW and checked through its descriptor (no path string
// is looked up twice), and every directory passed must be
//   - owned by a trusted user (below), and
//   - writable by neither group nor others, unless sticky: in a sticky
//     directory (/tmp) others may add names but not rename or remove ours.
// Trailing slashes are stripped first, so "LINK/" is LINK, a symlink.
//
// Symbolic links on the way (Debian: /var/run -> /run) are followed only when
// a trusted user owns them (their directory has passed, so no one else can
// replace them either); the target is then walked the same way, at most 40
// links in all. The pipe directory itself must not be a link: it would be
// one more name to trust for nothing, and refusing it keeps "LINK/" honest.
// `..` is walked as the kernel walks it: the parent of the directory reached
// so far, after any link. A relative directory is checked as cwd/DIR (getcwd
// gives the physical path) and used as given, so the file-name mapping and
// native_path() stay what they were.
//
// Whom to trust. A server: root and itself. A client: root, itself, and
//   - the uid in client_options::require_server_uid when set: the server it
//     insists on may own the directory;
//   - otherwise the owner of the pipe directory itself. Such a client already
//     trusts whoever holds the name, and a server refuses a directory owned by
//     anyone but itself or root, so only that owner's (or root's) servers can
//     have sockets there: the documented shared setup, a user's own pipe
//     directory, keeps working. A directory another user could change
//     (group-writable and not sticky, or inside a third user's directory) is
//     refused whoever owns the pipe directory.

namespace {

constexpr int max_links = 40; // as the kernel's MAXSYMLINKS

std::string who(uid_t uid) {
  std::string s = "uid " + std::to_string(uid);
  if (auto n = user_name(static_cast<long>(uid)); !n.empty()) s += " (" + n + ")";
  return s;
}

std::string group(gid_t gid) {
  std::string s = "group " + std::to_string(gid);
  std::vector<char> buf(4096);
  ::group gr{};
  ::group* out = nullptr;
  if (::getgrgid_r(gid, &gr, buf.data(), buf.size(), &out) == 0 && out) s += " (" + std::string(out->gr_name) + ")";
  return s;
}

std::string join(const std::string& dir, const std::string& name) { return dir == "/" ? "/" + name : dir + "/" + name; }

struct fd_guard {
  int fd = -1;
  fd_guard() = default;
  explicit fd_guard(int f) : fd(f) {}
  fd_guard(fd_guard&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  fd_guard& operator=(fd_guard&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd, -1));
    return *this;
  }
  ~fd_guard() { reset(); }
  void reset(int f = -1) {
    if (fd >= 0) ::close(fd);
    fd = f;
  }
};

// What the walk passed: a directory, or a symbolic link it followed.
struct step {
  std::string where; // the component's path as walked (after links)
  struct stat st;
  std::string target; // links: where it points
};

struct walker {
  std::string dir;          // as configured (messages)
  std::vector<step> passed; // in order, from / down
  // The directories from / to where the walk is; their descriptors are
  // O_PATH (usable as a parent for openat, and for fstat).
  struct level {
    fd_guard fd;
    std::string where;
    struct stat st;
  };
  std::vector<level> stack;

  // Why the walk stopped early.
  enum class stop { done, missing, failed };
  stop result = stop::done;
  int error = 0;       // failed: errno
  std::string at;      // missing/failed: the component
  std::string problem; // failed with a verdict of its own (not an errno)
  bool missing_is_last = false;
  std::string missing_name; // the missing component's name, in stack.back()

  bool open_root() {
    fd_guard fd(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    struct stat st{};
    if (fd.fd < 0 || ::fstat(fd.fd, &st) != 0) return fail("/", errno);
    stack.clear();
    stack.push_back({std::move(fd), "/", st});
    passed.push_back({"/", st, {}});
    return true;
  }

  bool fail(const std::string& where, int e) {
    result = stop::failed;
    error = e;
    at = where;
    return false;
  }

  bool refuse(const std::string& where, std::string why) {
    result = stop::failed;
    at = where;
    problem = std::move(why);
    return false;
  }

  // Walks `path` (absolute); false when it stops early (see result).
  bool walk(const std::string& path) {
    // Components still to walk; `true` marks the configured path's last one.
    std::deque<std::pair<std::string, bool>> todo;
    auto split = [](const std::string& p) {
      std::vector<std::string> out;
      for (std::size_t i = 0; i < p.size();) {
        auto j = p.find('/', i);
        if (j == std::string::npos) j = p.size();
        if (j > i && p.compare(i, j - i, ".") != 0) out.push_back(p.substr(i, j - i));
        i = j + 1;
      }
      return out;
    };
    for (auto& c : split(path))
      todo.emplace_back(c, false);
    if (!todo.empty() && todo.back().first != "..") todo.back().second = true;
    if (!open_root()) return false;
    int links = 0;
    while (!todo.empty()) {
      auto [name, last] = todo.front();
      todo.pop_front();
      if (name == "..") {
        if (stack.size() > 1) stack.pop_back();
        continue;
      }
      auto& parent = stack.back();
      std::string where = join(parent.where, name);
      int fd = ::openat(parent.fd.fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) {
        if (errno != ENOENT) return fail(where, errno);
        result = stop::missing;
        at = where;
        missing_name = name;
        missing_is_last = last;
        return false;
      }
      fd_guard g(fd);
      struct stat st{};
      if (::fstat(fd, &st) != 0) return fail(where, errno);
      if (S_ISLNK(st.st_mode)) {
        std::string target = read_link(fd);
        if (last)
          return refuse(where, "is a symbolic link (to " + target + "); give the directory itself, not a link to it");
        if (++links > max_links)
          return refuse(where, "is one symbolic link too many (more than " + std::to_string(max_links) +
                                   " on the way); give the directory's real path");
        passed.push_back({where, st, target});
        auto parts = split(target);
        for (auto it = parts.rbegin(); it != parts.rend(); ++it)
          todo.emplace_front(*it, false);
        if (!target.empty() && target.front() == '/' && !open_root()) return false;
        continue;
      }
      if (!S_ISDIR(st.st_mode)) return refuse(where, "is not a directory");
      passed.push_back({where, st, {}});
      stack.push_back({std::move(g), where, st});
    }
    return true;
  }

  static std::string read_link(int fd) {
    std::vector<char> buf(4096);
    ssize_t n = ::readlinkat(fd, "", buf.data(), buf.size());
    return n < 0 ? std::string("?") : std::string(buf.data(), static_cast<std::size_t>(n));
  }

  // The first component that breaks the rules, from / down, or empty.
  // `trusted(uid)`: an owner accepted; `whom`: them, for a message.
  // `reached`: the walk got to the pipe directory itself (a server about to
  // create it checks the way there).
  template <class Trusted>
  std::string verdict(const Trusted& trusted, const std::string& whom, bool server, bool reached) const {
    const auto& end = stack.back().st;
    for (auto& s : passed) {
      bool is_link = !s.target.empty();
      bool itself = reached && !is_link && s.st.st_dev == end.st_dev && s.st.st_ino == end.st_ino;
      std::string name = itself ? "pipe directory " + dir : "pipe directory " + dir + ": " + s.where;
      std::string what = itself ? std::string("the sockets in it") : dir + " and every socket in it";
      if (!trusted(s.st.st_uid)) {
        if (is_link)
          return name + " is a symbolic link owned by " + who(s.st.st_uid) +
                 ", who could point it elsewhere; give the path without it (it points to " + s.target + ")";
        if (itself && server)
          return name + " is owned by " + who(s.st.st_uid) + ", who could remove or replace our socket; use a " +
                 "directory of root's or yours (for pipes several users share, have root create it: install -d " +
                 "-m 1777 " + dir + ")";
        if (itself)
          return name + " is owned by " + who(s.st.st_uid) + ", not " + whom +
                 ", and that user could replace the server's socket; use the server's own pipe directory";
        return name + " is owned by " + who(s.st.st_uid) + ", not " + whom + ", and that user could replace " + what +
               "; use a pipe directory outside it";
      }
      if (!is_link && (s.st.st_mode & (S_IWGRP | S_IWOTH)) && !(s.st.st_mode & S_ISVTX)) {
        bool everyone = s.st.st_mode & S_IWOTH;
        return name + " is writable by " + (everyone ? std::string("everyone") : group(s.st.st_gid)) +
               " without the sticky bit, so " + (everyone ? "anyone" : "its members") + " could replace " + what +
               "; chmod " + (everyone ? "o-w " : "g-w ") + s.where + " (or chmod +t " + s.where +
               " to share it like /tmp)";
      }
    }
    return {};
  }
};

// The path to walk: absolute, as given otherwise.
bool absolute(const std::string& dir, std::string& out, std::error_code& ec) {
  if (!dir.empty() && dir.front() == '/') {
    out = dir;
    return true;
  }
  std::vector<char> buf(PATH_MAX);
  if (!::getcwd(buf.data(), buf.size())) {
    set_error_detail("pipe directory " + dir +
                     " is relative and the current directory is unknown: " + std::strerror(errno));
    ec = errno_error(errc::unsafe_directory, errno);
    return false;
  }
  out = std::string(buf.data()) + "/" + dir;
  return true;
}

bool report(const walker& w, const std::string& why, std::error_code& ec) {
  set_error_detail(why);
  ec = w.error ? errno_error(errc::unsafe_directory, w.error) : make_error_code(errc::unsafe_directory);
  return false;
}

} // namespace

bool check_server_directory(const std::string& dir, bool shared_default, std::error_code& ec) {
  std::string path;
  if (!absolute(dir, path, ec)) return false;
  const uid_t self = ::geteuid();
  auto trusted = [&](uid_t u) { return u == 0 || u == self; };
  const std::string whom = self == 0 ? "root" : "root or you";
  for (int attempt = 0; attempt < 2; ++attempt) {
    walker w;
    w.dir = dir;
    if (w.walk(path)) {
      if (auto bad = w.verdict(trusted, whom, true, true); !bad.empty()) return report(w, bad, ec);
      return true;
    }
    if (w.result == walker::stop::failed) {
      if (!w.problem.empty()) return report(w, "pipe directory " + dir + ": " + w.at + " " + w.problem, ec);
      set_error_detail("cannot inspect " + w.at + " on the way to pipe directory " + dir + ": " +
                       std::strerror(w.error));
      ec = errno_error(errc::unsafe_directory, w.error);
      return false;
    }
    // Missing. Only the directory itself is created, once the way to it passed.
    if (!w.missing_is_last) {
      set_error_detail("cannot create pipe directory " + dir + ": " + w.at + " does not exist");
      ec = errno_error(ENOENT);
      return false;
    }
    if (auto bad = w.verdict(trusted, whom, true, false); !bad.empty()) return report(w, bad, ec);
    int parent = w.stack.back().fd.fd;
    if (::mkdirat(parent, w.missing_name.c_str(), 0700) != 0) {
      if (errno == EEXIST) continue; // made meanwhile: check what is there
      set_error_detail("cannot create pipe directory " + dir + ": " + std::strerror(errno));
      ec = errno_error(errno);
      return false;
    }
    // The machine-wide default is shared like /tmp; a private one is
    // searchable so socket permissions decide who connects.
    fd_guard made(::openat(parent, w.missing_name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (made.fd < 0 || ::fchmod(made.fd, shared_default ? 01777 : 0755) != 0) {
      set_error_detail("cannot set up pipe directory " + dir + ": " + std::strerror(errno));
      ec = errno_error(errno);
      return false;
    }
  }
  set_error_detail("pipe directory " + dir + " keeps changing");
  ec = make_error_code(errc::unsafe_directory);
  return false;
}

bool check_client_directory(const std::string& dir, const std::string& socket,
                            std::optional<std::uint32_t> require_server_uid, std::error_code& ec) {
  std::string path;
  if (!absolute(dir, path, ec)) return false;
  walker w;
  w.dir = dir;
  if (!w.walk(path)) {
    if (w.result == walker::stop::missing) {
      set_error_detail("no server is listening at " + socket + " (" + w.at + " does not exist)");
      ec = errno_error(ENOENT);
      return false;
    }
    if (!w.problem.empty()) return report(w, "pipe directory " + dir + ": " + w.at + " " + w.problem, ec);
    // Cannot even look (EACCES): connect() would fail the same way.
    set_error_detail("cannot reach " + socket + ": " + w.at + ": " + std::strerror(w.error));
    ec = errno_error(w.error);
    return false;
  }
  const uid_t self = ::geteuid();
  const uid_t other = require_server_uid ? static_cast<uid_t>(*require_server_uid) : w.stack.back().st.st_uid;
  auto trusted = [&](uid_t u) { return u == 0 || u == self || u == other; };
  std::vector<std::string> names{"root"};
  if (self != 0) names.push_back("you");
  if (other != 0 && other != self)
    names.push_back(who(other) + (require_server_uid ? " (the server this client requires)" : " (its owner)"));
  std::string whom = names[0];
  for (std::size_t i = 1; i < names.size(); ++i)
    whom += (i + 1 == names.size() ? " or " : ", ") + names[i];
  if (auto bad = w.verdict(trusted, whom, false, true); !bad.empty()) return report(w, bad, ec);
  return true;
}

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
