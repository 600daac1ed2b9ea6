// The daemon's control operations (what `bnf vm ...` and `bnf migrate` ask for).
#pragma once

#include <nlohmann/json.hpp>

#include "agent/control_server.hpp"
#include "vm/registry/vm_manager.hpp"

namespace bnf::qemu {

Result<nlohmann::json> handle_control(VmManager& vms, const nlohmann::json& request, const ProgressFn& progress);

}  // namespace bnf::qemu
