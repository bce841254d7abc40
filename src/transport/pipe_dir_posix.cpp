// SPDX-License-Identifier: MIT
// The Linux pipe directory's safety checks for servers and clients: the walk
// of its path from / down (following only links it can trust) and the
// verdict on each component; and make_sockaddr. Taking a name in the
// directory is in reclaim_posix.cpp.

#include "transport/pipe_dir_posix.hpp"

#include "core/name_map.hpp"
#include "transport/posix_util.hpp"

#include <npipe/error.hpp>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <grp.h>
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

} // namespace

bool absolute_dir(const std::string& dir, std::string& out, std::error_code& ec) {
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

namespace {

bool report(const walker& w, const std::string& why, std::error_code& ec) {
  set_error_detail(why);
  ec = w.error ? errno_error(errc::unsafe_directory, w.error) : make_error_code(errc::unsafe_directory);
  return false;
}

} // namespace

bool check_server_directory(const std::string& dir, bool shared_default, std::error_code& ec) {
  std::string path;
  if (!absolute_dir(dir, path, ec)) return false;
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
                            std::optional<std::uint32_t> require_server_uid, std::error_code& ec, int* held,
                            struct stat* held_st) {
  std::string path;
  if (!absolute_dir(dir, path, ec)) return false;
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
  if (held) {
    *held = std::exchange(w.stack.back().fd.fd, -1);
    *held_st = w.stack.back().st;
  }
  return true;
}

} // namespace npipe::detail
