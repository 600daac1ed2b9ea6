#include "precopy/round_planner.hpp"

#include "common/page.hpp"

namespace bnf {

double RoundPlanner::expected_ms(uint64_t pages) const {
  if (link_rate_ <= 0) return pages <= kSmallSet ? 0 : budget_.downtime_ms * 2;
  return 1000.0 * static_cast<double>(pages * kPageSize) / link_rate_;
}

RoundVerdict RoundPlanner::after_round(uint64_t sent_bytes, double seconds, uint64_t written_pages) {
  const bool first = rounds_ == 0 && last_written_ == UINT64_MAX;
  if (!first) ++rounds_;
  if (sent_bytes >= kMeasurable && seconds > 0) link_rate_ = static_cast<double>(sent_bytes) / seconds;
  write_rate_ = seconds > 0 ? static_cast<double>(written_pages) / seconds : 0;
  if (link_rate_ > 0 && write_rate_ * kPageSize > link_rate_) faster_than_link_ = true;
  stalled_ = written_pages >= last_written_ ? stalled_ + 1 : 0;
  last_written_ = written_pages;
  // Half the budget for the pages: device state and the switch take the rest.
  if (expected_ms(written_pages) <= budget_.downtime_ms / 2) return RoundVerdict::fits;
  if (rounds_ >= budget_.max_rounds) return RoundVerdict::round_limit;
  if (stalled_ >= budget_.stalled_rounds) return RoundVerdict::not_converging;
  return RoundVerdict::again;
}

const char* RoundPlanner::name(RoundVerdict v) {
  switch (v) {
    case RoundVerdict::again: return "again";
    case RoundVerdict::fits: return "fits the downtime budget";
    case RoundVerdict::round_limit: return "round limit";
    case RoundVerdict::not_converging: return "not converging: the guest writes as fast as the link sends";
  }
  return "?";
}

}  // namespace bnf
