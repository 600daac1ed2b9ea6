// A shared-mode departure (MigrateOptions::RamMode): bnf's rounds
// (shared_rounds.hpp) send the VM's RAM file while the VM runs; then QEMU
// migrates with x-ignore-shared into our socket, which carries only its small
// RAM blocks and the device state, and is relayed as in relayed_trip.hpp; the
// last round goes with the VM stopped, before the device state.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "bitmap/write_tracker.hpp"
#include "common/unique_fd.hpp"
#include "launch/vm_definition.hpp"
#include "vm/source/trip_context.hpp"

namespace bnf::qemu {

// Whether shared mode can run for this VM here: the rounds' write tracker,
// armed on QEMU's RAM mapping (every page), or why not.
struct SharedReadiness {
  std::unique_ptr<WriteTracker> tracker;
  std::string why_not;
};
SharedReadiness prepare_shared(const VmDefinition& def, const std::string& ram_file, int qemu_pid);

// Starts QEMU's migration into our socket (x-ignore-shared on); its stream.
using StartSharedQemu = std::function<Result<UniqueFd>()>;

Result<Departed> shared_trip(TripContext& x, std::unique_ptr<WriteTracker> tracker, const StartSharedQemu& start);

}  // namespace bnf::qemu
