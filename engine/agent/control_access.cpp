#include "agent/control_access.hpp"

#include <fmt/format.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

namespace bnf {

namespace {
// getgrnam_r and getpwuid_r want a buffer of a size they do not say; ERANGE asks for more.
constexpr size_t kFirstBuffer = 1024;
constexpr size_t kLastBuffer = 1 << 20;

Result<gid_t> group_id(const std::string& name) {
  for (size_t size = kFirstBuffer; size <= kLastBuffer; size *= 4) {
    std::vector<char> buf(size);
    group g{};
    group* found = nullptr;
    const int err = ::getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found);
    if (err == ERANGE) continue;
    if (err != 0) return errno_status("look up group " + name, err);
    if (found == nullptr) return Status(Errc::not_found, "unknown group '" + name + "' (--control-group)");
    return g.gr_gid;
  }
  return Status(Errc::internal, "look up group " + name + ": its entry is too large");
}

// The groups of user `uid` as the user database says (primary and supplementary).
std::vector<gid_t> groups_of(uid_t uid) {
  for (size_t size = kFirstBuffer; size <= kLastBuffer; size *= 4) {
    std::vector<char> buf(size);
    passwd pw{};
    passwd* found = nullptr;
    const int err = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found);
    if (err == ERANGE) continue;
    if (err != 0 || found == nullptr) return {};  // no such user: no groups
    std::vector<gid_t> groups(16);
    int n = static_cast<int>(groups.size());
    while (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
      if (static_cast<size_t>(n) <= groups.size()) return {};  // n says how many it needs
      groups.resize(static_cast<size_t>(n));
    }
    groups.resize(static_cast<size_t>(n));
    return groups;
  }
  return {};
}
}  // namespace

ControlAccess::ControlAccess() : daemon_uid_(::geteuid()) {}

Result<ControlAccess> ControlAccess::with_group(const std::string& group) {
  ControlAccess a;
  if (group.empty()) return a;
  BNF_ASSIGN_OR_RETURN(a.group_, group_id(group));
  a.group_name_ = group;
  return a;
}

SocketFileAccess ControlAccess::socket_file() const {
  if (!group_) return {};
  return {0660, *group_};
}

Status ControlAccess::admit(int fd) const {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return errno_status("control access refused: the client's credentials (SO_PEERCRED)", errno);
  return admit(cred.uid, cred.gid);
}

Status ControlAccess::admit(uid_t uid, gid_t gid) const {
  if (uid == 0 || uid == daemon_uid_ || (group_ && is_member(uid, gid))) return Status::ok();
  const std::string who = group_ ? fmt::format("root, the daemon's user or in group {}", group_name_)
                                 : std::string("root or the daemon's user");
  return {Errc::denied, fmt::format("control access refused: uid {} is not {}", uid, who)};
}

bool ControlAccess::is_member(uid_t uid, gid_t gid) const {
  if (gid == *group_) return true;
  const std::vector<gid_t> groups = groups_of(uid);
  return std::find(groups.begin(), groups.end(), *group_) != groups.end();
}

}  // namespace bnf
