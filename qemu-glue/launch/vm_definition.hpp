// A VM as bnf knows it: what travels with a migration so the destination
// starts an identical QEMU, and the launch conventions every bnf VM follows
// (RAM in a shared memory-backend file, a QMP socket, a serial log).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.hpp"

namespace bnf::qemu {

struct VmDefinition {
  std::string name;
  uint64_t memory_bytes = 0;
  std::string accel = "tcg";            // "tcg" or "kvm"
  std::vector<std::string> extra_args;  // the user's disks, kernel, devices ...

  // Name rules, memory size, accelerator. The extra arguments are the
  // daemon's to check (QemuArgPolicy): it knows what its operator allows.
  [[nodiscard]] Status validate() const;
  [[nodiscard]] nlohmann::json to_json() const;
  static Result<VmDefinition> from_json(const nlohmann::json& j);
};

struct LaunchPaths {
  std::string ram_file;    // memory-backend-file mem-path (the snapshot image)
  std::string qmp_socket;  // QMP UNIX socket
  std::string serial_log;  // the guest's serial console
};

// The QEMU command line for `def` (argv[0] first). With `incoming`, QEMU waits
// paused for a migration stream on that URI (e.g. "unix:/path").
std::vector<std::string> qemu_command(const VmDefinition& def, const LaunchPaths& paths,
                                      const std::optional<std::string>& incoming);

}  // namespace bnf::qemu
