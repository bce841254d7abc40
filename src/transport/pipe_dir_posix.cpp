// SPDX-License-Identifier: MIT
// The Linux pipe directory: its safety checks and taking a name in it.

#include "transport/pipe_dir_posix.hpp"

#include "core/name_map.hpp"
#include "transport/local_posix.hpp"
#include "transport/posix_util.hpp"

#include <npipe/error.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <sys/file.h>
#include <thread>
#include <unistd.h>

namespace npipe::detail {

bool make_sockaddr(const std::string& path, sockaddr_un& sa, socklen_t& len) {
  if (path.size() > max_socket_path) return false;
  std::memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

// Checks (and, when missing, creates) the pipe directory. Rules from
// notes on Unix socket security: not a symlink, a directory, owned by root or
// us, and if anyone may write to it, sticky.
bool check_directory(const std::string& dir, bool shared_default, std::error_code& ec) {
  struct stat st{};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      set_error_detail("cannot inspect pipe directory " + dir + ": " + std::strerror(errno));
      ec = errno_error(errc::unsafe_directory, errno);
      return false;
    }
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      set_error_detail("cannot create pipe directory " + dir + ": " + std::strerror(errno));
      ec = errno_error(errno);
      return false;
    }
    // The machine-wide default is shared like /tmp; a private one is searchable so
    // socket permissions decide who connects.
    if (errno != EEXIST) ::chmod(dir.c_str(), shared_default ? 01777 : 0755);
    if (::lstat(dir.c_str(), &st) != 0) {
      ec = errno_error(errno);
      return false;
    }
  }
  auto refuse = [&](const std::string& why) {
    set_error_detail("pipe directory " + dir + " " + why);
    ec = make_error_code(errc::unsafe_directory);
    return false;
  };
  if (S_ISLNK(st.st_mode)) return refuse("is a symbolic link; use a real directory");
  if (!S_ISDIR(st.st_mode)) return refuse("is not a directory");
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    return refuse("is owned by uid " + std::to_string(st.st_uid) +
                  ", another user who could remove our socket; have root create it (install -d -m 1777 " + dir +
                  ") or set NPIPE_DIR");
  if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
    return refuse("is world-writable without the sticky bit; anyone could replace our socket (chmod +t " + dir + ")");
  return true;
}

namespace {

// Serialises stale-socket reclaim in one directory. Bounded: a lock held by a
// stuck process fails the open instead of hanging it.
class dir_lock {
public:
  dir_lock(const std::string& dir, std::error_code& ec) {
    fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) {
      ec = errno_error(errno);
      return;
    }
    auto until = clock::now() + std::chrono::seconds(3);
    while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK || clock::now() >= until) {
        set_error_detail("could not lock pipe directory " + dir + " to reclaim a stale socket");
        ec = make_error_code(errc::timed_out, errno);
        ::close(fd_);
        fd_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  ~dir_lock() {
    if (fd_ >= 0) ::close(fd_); // releases the lock
  }
  dir_lock(const dir_lock&) = delete;
  dir_lock& operator=(const dir_lock&) = delete;

private:
  int fd_ = -1;
};

} // namespace

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

// link() never replaces an existing file, so a live server's name cannot be
// hijacked.
bool take_name(const std::string& dir, const std::string& slot, const std::string& path, const pipe_name& name,
               dev_t& dev, ino_t& ino, std::error_code& ec) {
  // Took the name: remember which file is ours, so close() removes only it.
  auto linked = [&] {
    struct stat st{};
    ::lstat(path.c_str(), &st);
    dev = st.st_dev;
    ino = st.st_ino;
    return true;
  };
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (::link(slot.c_str(), path.c_str()) == 0) return linked();
    if (errno != EEXIST) {
      set_error_detail("cannot create " + path + ": " + std::strerror(errno));
      ec = errno_error(errno);
      return false;
    }
    // The name exists. Live server, or a stale file a crash left behind?
    dir_lock lock(dir, ec);
    if (ec) {
      ec = errno_error(os_error(ec));
      return false;
    }
    peer_identity owner;
    auto pr = probe(path, owner);
    struct stat st{};
    bool have_stat = ::lstat(path.c_str(), &st) == 0;
    if (pr == probe_result::live || pr == probe_result::unknown) {
      std::string who = pr == probe_result::live && owner.pid > 0 ? describe(owner)
                        : have_stat ? "uid " + std::to_string(st.st_uid)
                                    : "an unknown owner";
      set_error_detail("pipe " + name.str() + " is in use by a live server (" + who + ") at " + path);
      ec = make_error_code(errc::name_in_use);
      return false;
    }
    if (pr == probe_result::stale) {
      if (!have_stat || !S_ISSOCK(st.st_mode)) {
        set_error_detail(path + " exists and is not a socket; remove it or choose another name");
        ec = make_error_code(errc::name_in_use);
        return false;
      }
      if (st.st_uid != ::geteuid() && ::geteuid() != 0) {
        set_error_detail("stale socket " + path + " belongs to uid " + std::to_string(st.st_uid) +
                         "; only that user or root can remove it");
        ec = make_error_code(errc::name_in_use);
        return false;
      }
      if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        ec = errno_error(errno);
        return false;
      }
    }
    // gone or reclaimed: try the link again, still under the lock
    if (::link(slot.c_str(), path.c_str()) == 0) return linked();
    if (errno != EEXIST) {
      ec = errno_error(errno);
      return false;
    }
  }
  set_error_detail("pipe " + name.str() + " keeps reappearing at " + path);
  ec = make_error_code(errc::name_in_use);
  return false;
}

} // namespace npipe::detail
