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
// (/proc/self/fd/N/FILE), never through the path that was checked, so nobody
// can swap a directory between the check and the connect — the first time
// either.
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
// number may name something else, and the entry is forgotten without
// closing it. Without /proc the descriptor cannot be connected through:
// nothing is remembered, and every connect walks the way, as before.

#include "core/name_map.hpp"
#include "transport/local_posix.hpp"
#include "transport/pipe_dir_posix.hpp"

#include <npipe/local_path.hpp>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace npipe::detail {

namespace {

struct checked_dir {
  int fd = -1;
  struct stat st{};
  std::string via;                     // "/proc/self/fd/N/", or empty: connect by the path
  mutable std::atomic<bool> lost{false}; // fd no longer names it: not ours to close
  checked_dir() = default;
  checked_dir(const checked_dir&) = delete;
  checked_dir& operator=(const checked_dir&) = delete;
  ~checked_dir() {
    if (fd >= 0 && !lost.load(std::memory_order_relaxed)) ::close(fd);
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

void aim(socket_target& t, std::shared_ptr<const checked_dir> d) {
  std::string file = t.path.substr(t.path.rfind('/') + 1);
  bool through = !d->via.empty() && d->via.size() + file.size() <= max_socket_path;
  t.address = through ? d->via + file : t.path;
  t.dir = std::move(d);
}

// The whole walk; remembered when the directory can be connected through.
bool check(const dir_key& k, const std::string& dir, socket_target& t, std::error_code& ec) {
  auto d = std::make_shared<checked_dir>();
  if (!check_client_directory(dir, t.path, k.require, ec, &d->fd, &d->st)) return false;
  std::string via = "/proc/self/fd/" + std::to_string(d->fd);
  struct stat st{};
  if (::stat(via.c_str(), &st) == 0 && st.st_dev == d->st.st_dev && st.st_ino == d->st.st_ino) {
    d->via = via + "/";
    memory().keep(k, d);
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
    struct stat at{}, held{};
    bool ours = ::fstat(d->fd, &held) == 0 && same_dir(d->st, held);
    if (ours && ::stat(k.path.c_str(), &at) == 0 && same_dir(d->st, at)) {
      aim(t, std::move(d));
      return true;
    }
    if (!ours) d->lost.store(true, std::memory_order_relaxed);
    memory().forget(k, d.get());
  }
  return check(k, dir, t, ec);
}

} // namespace npipe::detail
