// The daemon's state directory holds guest RAM, digest keys and the peer key:
// only the daemon's user may enter it. With a control group, its members may
// pass through it to the control socket (mode 0710), not list or read it.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "common/log.hpp"
#include "common/status.hpp"

namespace bnf {

// Creates `state_dir` (and snapshots/) private, and tightens the folders an
// older bnf made readable by everyone (0755), saying so in the log.
Status prepare_state_dir(const std::string& state_dir, std::optional<gid_t> control_group, const Logger& log);

}  // namespace bnf
