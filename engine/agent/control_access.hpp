// Who may use the daemon's control socket. Control access is root access (a
// client has QEMU started as root with arguments of its choosing, reads guest
// memory), so the socket file is 0600, or 0660 with a group the operator
// names, and every client is checked by its credentials (SO_PEERCRED) too:
// the file's mode alone fails open after a careless chmod or a socket put
// where others can reach it.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "common/status.hpp"
#include "common/unix_socket.hpp"

namespace bnf {

class ControlAccess {
 public:
  // Root and the daemon's own user.
  ControlAccess();
  // ... and the members of `group` (--control-group); "" is no group.
  static Result<ControlAccess> with_group(const std::string& group);

  [[nodiscard]] SocketFileAccess socket_file() const;
  [[nodiscard]] std::optional<gid_t> group() const { return group_; }
  // The client connected on `fd`, by its credentials: ok, or why it is refused.
  [[nodiscard]] Status admit(int fd) const;
  // A client of user `uid` running with primary group `gid`.
  [[nodiscard]] Status admit(uid_t uid, gid_t gid) const;

 private:
  [[nodiscard]] bool is_member(uid_t uid, gid_t gid) const;
  uid_t daemon_uid_;
  std::optional<gid_t> group_;
  std::string group_name_;
};

}  // namespace bnf
