#include "agent/state_dir.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/files.hpp"

namespace bnf {

namespace {
constexpr mode_t kPassThroughMode = 0710;  // the control group may reach the socket inside

// Gives `dir` exactly `mode` (and `group`, when set), logging a change.
Status restrict_dir(const std::string& dir, mode_t mode, std::optional<gid_t> group, const Logger& log) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return errno_status("stat " + dir, errno);
  if (group && st.st_gid != *group && ::chown(dir.c_str(), static_cast<uid_t>(-1), *group) != 0)
    return errno_status("give " + dir + " the control group", errno);
  const mode_t was = st.st_mode & 07777;
  if (was == mode) return Status::ok();
  if (::chmod(dir.c_str(), mode) != 0) return errno_status("set the mode of " + dir, errno);
  log.info("{}: mode {:04o} is now {:04o} (guest memory and keys are the daemon's user's alone)", dir, was, mode);
  return Status::ok();
}
}  // namespace

Status prepare_state_dir(const std::string& state_dir, std::optional<gid_t> control_group, const Logger& log) {
  const std::string snapshots = state_dir + "/snapshots";
  const std::string vms = state_dir + "/vms";
  BNF_TRY(make_dirs(snapshots));
  BNF_TRY(restrict_dir(state_dir, control_group ? kPassThroughMode : kPrivateDirMode, control_group, log));
  BNF_TRY(restrict_dir(snapshots, kPrivateDirMode, std::nullopt, log));
  if (path_exists(vms)) BNF_TRY(restrict_dir(vms, kPrivateDirMode, std::nullopt, log));
  return Status::ok();
}

}  // namespace bnf
