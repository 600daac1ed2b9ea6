#include "transport/receive_limits.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace bnf::transport {

using std::chrono::milliseconds;

std::optional<milliseconds> next_receive_wait(const ReceiveLimits& l) {
  std::optional<milliseconds> wait;
  if (l.idle.count() > 0) wait = l.idle;
  if (l.deadline != ReceiveLimits::Clock::time_point::max()) {
    const auto left = std::chrono::duration_cast<milliseconds>(l.deadline - ReceiveLimits::Clock::now());
    wait = wait ? std::min(*wait, left) : left;
  }
  if (wait) wait = std::max(*wait, milliseconds(1));
  return wait;
}

Status after_quiet_wait(const ReceiveLimits& l, const std::string& peer) {
  if (ReceiveLimits::Clock::now() >= l.deadline) return {Errc::connection_lost, l.deadline_passed};
  if (l.idle.count() == 0) return Status::ok();  // only the deadline bounds it, and it has not come
  if (l.still_active && l.still_active()) return Status::ok();
  return {Errc::connection_lost, fmt::format("connection to {} lost: nothing received for {:.0f} s (the peer timeout)",
                                             peer, std::chrono::duration<double>(l.idle).count())};
}

}  // namespace bnf::transport
