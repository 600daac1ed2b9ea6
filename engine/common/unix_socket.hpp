// UNIX stream sockets: the control socket, QMP, and QEMU's migration sockets.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

#include "common/status.hpp"
#include "common/unique_fd.hpp"

namespace bnf {

// Who may connect through a listening socket's file: its mode, and the group
// it is given (kKeepGroup: the creator's).
struct SocketFileAccess {
  static constexpr gid_t kKeepGroup = static_cast<gid_t>(-1);
  mode_t mode = 0600;
  gid_t group = kKeepGroup;
};

// Listens on `path`, replacing a stale socket file left there. The file has
// `access` from the moment it appears at `path`, whatever the umask: it is
// bound in a private folder beside `path`, given its mode, then renamed.
Result<UniqueFd> unix_listen(const std::string& path, int backlog, SocketFileAccess access = {});
// Connects to `path`, retrying for up to `retry_for` while the listener is not
// there yet (a process just started); zero means one attempt.
Result<UniqueFd> unix_connect(const std::string& path, std::chrono::milliseconds retry_for);

}  // namespace bnf
