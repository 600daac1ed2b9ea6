// A shared-mode departure (MigrateOptions::RamMode): bnf's rounds
// (shared_rounds.hpp) send the VM's RAM file while the VM runs; then QEMU
// migrates with x-ignore-shared into our socket, which carries only its small
// RAM blocks and the device state, and is relayed as in relayed_trip.hpp; the
// last round goes with the VM stopped, before the device state.
#pragma once

#include <functional>
#include <string>

#include "bitmap/write_tracker.hpp"
#include "bitmap/writes_since_arrival.hpp"
#include "common/unique_fd.hpp"
#include "vm/source/trip_context.hpp"

namespace bnf::qemu {

// The rounds' tracker, armed on every page of QEMU's RAM mapping.
// `since_arrival` is the same tracker when this host armed it as the VM
// arrived (round 0 of a trip back is then what the guest wrote since); null
// otherwise, and `lost_because` says why.
struct SharedTracking {
  WriteTracker& tracker;
  WritesSinceArrival* since_arrival = nullptr;
  std::string lost_because;
};

// Starts QEMU's migration into our socket (x-ignore-shared on); its stream.
using StartSharedQemu = std::function<Result<UniqueFd>()>;

Result<Departed> shared_trip(TripContext& x, const SharedTracking& t, const StartSharedQemu& start);

}  // namespace bnf::qemu
