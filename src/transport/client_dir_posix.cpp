// SPDX-License-Identifier: MIT
// Linux local pipes: where a client connects (local_posix.hpp).
//
// The pipe directory's check (pipe_dir_posix.cpp) walks every component of
// its path from / down, about three system calls each: most of what a
// connect cost on the client side. So a process remembers the directories
// its clients checked, each held open (O_PATH). The next connect stats the
// configured path and the held descriptor: when both are still the
// directory that passed (device, inode, owner, group, mode; not removed),
// the check stands. Connects go through the held descriptor
// (/proc/thread-self/fd/N/FILE), never through the path that was checked, so
// nobody can swap a directory between the check and the connect — the first
// time either. A socket file name too long for that address is connected by
// its path, after a whole walk each time, as without /proc.
//
// What a remembered check does not see again: a trusted user loosening a
// directory above the pipe directory after the check (making it writable by
// others). Whoever could then change the way can replace the pipe directory,
// which the stat sees: the next connect walks the whole way again and
// refuses. They cannot change what is inside the directory that passed,
// where the connect goes. A pipe directory renamed away and replaced, or
// removed and made again, is another inode: checked anew.
//
// The descriptor is stat'ed on every use because a program may close
// descriptors it does not own (as daemons do before they serve): then the
// number may name something else; the entry is forgotten, and a descriptor
// is closed only while it still names its directory. Without /proc the descriptor cannot be connected through:
// nothing is remembered, and every connect walks the way, as before.

#include "core/name_map.hpp"
#include "transport/local_posix.hpp"
#include "transport/pipe_dir_posix.hpp"

#include <npipe/local_path.hpp>

#include <algorithm>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace npipe::detail {

namespace {

// The descriptor `fd` still names the directory `st` was taken of (a
// program may have closed it and reused the number).
bool names(int fd, const struct stat& st) {
  struct stat now{};
  return ::fstat(fd, &now) == 0 && now.st_dev == st.st_dev && now.st_ino == st.st_ino;
}

struct checked_dir {
  int fd = -1;
  struct stat st{};
  std::string via; // "/proc/thread-self/fd/N/" (or /proc/self), or empty: connect by the path
  checked_dir() = default;
  checked_dir(const checked_dir&) = delete;
  checked_dir& operator=(const checked_dir&) = delete;
  ~checked_dir() {
    if (fd >= 0 && names(fd, st)) ::close(fd); // else the number is the program's now: leave it
  }
};

// Whose check it was: the same path checked for another required server
// user, or by another effective user, trusts other owners.
struct dir_key {
  std::string path; // absolute
  std::optional<std::uint32_t> require;
  uid_t euid;
  bool operator==(const dir_key&) const = default;
};

// The remembered checks: a few directories (a process rarely uses more than
// one or two), the least recently used forgotten first. A forgotten entry's
// descriptor closes when the last connect through it is done.
class dir_memory {
public:
  std::shared_ptr<const checked_dir> find(const dir_key& k) {
    std::lock_guard lk(mu_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (!(it->first == k)) continue;
      auto d = it->second;
      std::rotate(it, it + 1, entries_.end()); // most recent last
      return d;
    }
    return nullptr;
  }
  void keep(const dir_key& k, std::shared_ptr<const checked_dir> d) {
    std::lock_guard lk(mu_);
    std::erase_if(entries_, [&](const auto& e) { return e.first == k; });
    if (entries_.size() >= max_entries) entries_.erase(entries_.begin());
    entries_.emplace_back(k, std::move(d));
  }
  void forget(const dir_key& k, const checked_dir* which) {
    std::lock_guard lk(mu_);
    std::erase_if(entries_, [&](const auto& e) { return e.first == k && e.second.get() == which; });
  }

private:
  static constexpr std::size_t max_entries = 8;
  std::mutex mu_;
  std::vector<std::pair<dir_key, std::shared_ptr<const checked_dir>>> entries_;
};

dir_memory& memory() {
  static auto* m = new dir_memory; // never destroyed: a connect may run while the process exits
  return *m;
}

bool same_dir(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_mode == b.st_mode && a.st_uid == b.st_uid &&
         a.st_gid == b.st_gid && b.st_nlink > 0;
}

std::string file_of(const socket_target& t) { return t.path.substr(t.path.rfind('/') + 1); }

// Connects go through the descriptor, or (no /proc) by the path just checked.
void aim(socket_target& t, std::shared_ptr<const checked_dir> d) {
  t.address = d->via.empty() ? t.path : d->via + file_of(t);
  t.dir = std::move(d);
}

// The longest "/proc/.../fd/N/" a descriptor can need: a longer socket file
// name does not fit in sun_path that way, so it is never remembered.
constexpr std::size_t longest_via = sizeof "/proc/thread-self/fd/2147483647/" - 1;

// The whole walk; remembered when the directory can be connected through.
// /proc/thread-self first: /proc/self fails once the main thread has exited.
bool check(const dir_key& k, const std::string& dir, socket_target& t, std::error_code& ec) {
  auto d = std::make_shared<checked_dir>();
  if (!check_client_directory(dir, t.path, k.require, ec, &d->fd, &d->st)) return false;
  if (file_of(t).size() + longest_via <= max_socket_path) {
    for (const char* proc : {"/proc/thread-self/fd/", "/proc/self/fd/"}) {
      std::string via = proc + std::to_string(d->fd);
      struct stat st{};
      if (::stat(via.c_str(), &st) == 0 && st.st_dev == d->st.st_dev && st.st_ino == d->st.st_ino) {
        d->via = via + "/";
        memory().keep(k, d);
        break;
      }
    }
  }
  aim(t, std::move(d));
  return true;
}

} // namespace

bool client_target(const pipe_name& name, const client_options& opts, socket_target& t, std::error_code& ec) {
  dir_key k;
  std::string dir = pipe_directory(opts.pipe_dir);
  t.path = socket_path(dir, name, ec);
  if (ec) {
    set_error_detail("pipe directory path " + dir + " is too long for a Unix socket path");
    return false;
  }
  k.require = opts.require_server_uid;
  k.euid = ::geteuid();
  if (!absolute_dir(dir, k.path, ec)) return false;
  if (auto d = memory().find(k)) {
    // The check stands while the held descriptor and the path both name
    // the directory that passed, unchanged. (A descriptor the program
    // reused is not closed: see checked_dir.)
    struct stat at{}, held{};
    if (::fstat(d->fd, &held) == 0 && same_dir(d->st, held) && ::lstat(k.path.c_str(), &at) == 0 &&
        same_dir(d->st, at)) {
      aim(t, std::move(d));
      return true;
    }
    memory().forget(k, d.get());
  }
  return check(k, dir, t, ec);
}

} // namespace npipe::detail
