// UNIX stream sockets: the control socket, QMP, and QEMU's migration sockets.
#pragma once

#include <chrono>
#include <string>

#include "common/status.hpp"
#include "common/unique_fd.hpp"

namespace bnf {

// Listens on `path`, replacing a stale socket file left there.
Result<UniqueFd> unix_listen(const std::string& path, int backlog);
// Connects to `path`, retrying for up to `retry_for` while the listener is not
// there yet (a process just started); zero means one attempt.
Result<UniqueFd> unix_connect(const std::string& path, std::chrono::milliseconds retry_for);

}  // namespace bnf
