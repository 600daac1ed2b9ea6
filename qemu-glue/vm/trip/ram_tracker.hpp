// The write tracker of shared mode, armed on every page of QEMU's mapping of
// the VM's RAM file: by the source for its rounds, and by the destination of
// a shared-mode arrival before the guest runs there (the bitmap since
// arrival, bitmap/writes_since_arrival.hpp).
#pragma once

#include <memory>
#include <string>

#include "bitmap/write_tracker.hpp"
#include "launch/vm_definition.hpp"

namespace bnf::qemu {

struct RamTracker {
  std::unique_ptr<WriteTracker> tracker;
  std::string why_not;  // when there is no tracker
};

// Refused for a VM with a device that writes guest memory behind the tracker.
RamTracker arm_ram_tracker(const VmDefinition& def, const std::string& ram_file, int qemu_pid);

}  // namespace bnf::qemu
