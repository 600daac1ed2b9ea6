// A relayed departure: QEMU migrates into a local UNIX socket of ours; the
// codec takes the main RAM block's pages out of the stream, the page filter
// (DeparturePages) drops what the destination's base holds, and the rest
// travels as PAGES/ZEROS frames, the rest of the stream as STREAM frames, all
// on one ordered connection. The destination's QEMU's return path comes back
// on it too (trip/return_path.hpp). In shared mode (`shared` not null) the
// stream carries no page of the main block: bnf's rounds sent those, and the
// last round goes when the device state begins, before VM_SWITCH.
#pragma once

#include "common/unique_fd.hpp"
#include "vm/source/shared_rounds.hpp"
#include "vm/source/trip_context.hpp"

namespace bnf::qemu {

// Runs QEMU's stream from `qemu_stream` to its end, and the switch over.
// `t_stream`: when QEMU's migration was started (for the report's phases).
Result<Departed> relay_trip(TripContext& x, UniqueFd qemu_stream, Clock::time_point t_stream,
                            SharedRounds* shared = nullptr);

}  // namespace bnf::qemu
