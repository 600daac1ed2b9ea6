// How long a connection's receives may wait for the peer. Without a bound a
// receive waits as long as the socket lives: TCP's own timeouts
// (TCP_USER_TIMEOUT, keepalive) only find a peer whose host stopped
// answering, never one that is up and simply sends nothing (or one byte at a
// time), so a silent peer would hold its thread, its memory and whatever lock
// its work took for ever. The daemon bounds every receive: before the peer
// exchange by a deadline, afterwards by the peer timeout.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "common/status.hpp"

namespace bnf::transport {

struct ReceiveLimits {
  using Clock = std::chrono::steady_clock;
  // A receive that gets no byte for this long fails (zero: no bound) ...
  std::chrono::milliseconds idle{0};
  // ... unless this says the peer is busy on another connection of the same
  // work (a push's control connection is quiet while its data streams run).
  std::function<bool()> still_active;
  // A receive still short at this time fails, however the bytes trickle in.
  Clock::time_point deadline = Clock::time_point::max();
  // What that failure says (the deadline's purpose).
  std::string deadline_passed = "the receive deadline passed";
};

// How long the next wait for bytes may last; nullopt: unbounded. At least 1 ms.
[[nodiscard]] std::optional<std::chrono::milliseconds> next_receive_wait(const ReceiveLimits& l);
// After a wait that ended with no byte: ok to wait again (the deadline has
// not passed and `still_active` says so), else why the receive fails
// (Errc::connection_lost: `deadline_passed`, or the silence, naming `peer`).
[[nodiscard]] Status after_quiet_wait(const ReceiveLimits& l, const std::string& peer);

}  // namespace bnf::transport
