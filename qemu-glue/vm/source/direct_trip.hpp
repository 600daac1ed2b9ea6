// A direct departure (a full trip over TCP): QEMU streams to the destination
// daemon itself, on a connection of its own; this daemon watches it over QMP,
// re-hashes the stopped VM and settles the destination's image with it
// (direct_departure.hpp) before the destination's QEMU gets the device state.
#pragma once

#include "common/uri.hpp"
#include "vm/source/trip_context.hpp"

namespace bnf::qemu {

// After QEMU's migration to `to` started (TripStart) and the agreement said direct.
Result<Departed> direct_trip(TripContext& x, const Endpoint& to, unsigned peer_timeout_ms);

}  // namespace bnf::qemu
