// SPDX-License-Identifier: MIT
// The access policy of a Linux local-pipe server: the mode its socket file
// gets and who may connect (uid and group membership, getgrouplist).

#include "transport/access_posix.hpp"

#include <algorithm>
#include <cstdint>
#include <grp.h>
#include <unistd.h>
#include <vector>

namespace npipe::detail {

mode_t socket_mode(const access_policy& a) {
  switch (a.who) {
  case access_policy::kind::current_user: return 0600;
  case access_policy::kind::group: return 0660;
  case access_policy::kind::everyone:
  case access_policy::kind::list: return 0666; // the credential check narrows a list
  }
  return 0600;
}

namespace {

bool in_group(const peer_identity& p, std::uint32_t gid) {
  if (p.gid == static_cast<std::int64_t>(gid)) return true;
  if (p.user.empty()) return false;
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  if (::getgrouplist(p.user.c_str(), static_cast<gid_t>(p.gid), groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(p.user.c_str(), static_cast<gid_t>(p.gid), groups.data(), &n) < 0) return false;
  }
  groups.resize(static_cast<std::size_t>(n));
  return std::find(groups.begin(), groups.end(), static_cast<gid_t>(gid)) != groups.end();
}

} // namespace

bool allowed(const access_policy& a, const peer_identity& p) {
  if (p.uid == 0 || p.uid == static_cast<std::int64_t>(::geteuid())) return true;
  switch (a.who) {
  case access_policy::kind::current_user: return false;
  case access_policy::kind::everyone: return true;
  case access_policy::kind::group: return in_group(p, a.gid);
  case access_policy::kind::list:
    if (std::find(a.uids.begin(), a.uids.end(), static_cast<std::uint32_t>(p.uid)) != a.uids.end()) return true;
    for (auto g : a.gids)
      if (in_group(p, g)) return true;
    return false;
  }
  return false;
}

} // namespace npipe::detail
