// When bnf's own precopy (shared mode) stops going round: after each round
// it is told what the round sent, how long that took and how many pages the
// guest wrote meanwhile, and says whether the rest fits the downtime budget
// at the link rate it measured, or why it stops anyway.
#pragma once

#include <cstdint>
#include <string>

namespace bnf {

struct RoundBudget {
  double downtime_ms = 300;  // what the last round (VM stopped) may take of the downtime
  unsigned max_rounds = 30;  // rounds after round 0, at most
  // Rounds in a row whose written set does not shrink before the planner
  // gives up waiting for the guest to slow down.
  unsigned stalled_rounds = 3;
};

enum class RoundVerdict {
  again,           // another round while the VM runs
  fits,            // what is left fits the budget: stop the VM
  round_limit,     // max_rounds reached
  not_converging,  // the guest writes as fast as the link sends
};

class RoundPlanner {
 public:
  explicit RoundPlanner(RoundBudget budget) : budget_(budget) {}

  // A round sent `sent_bytes` in `seconds`; `written_pages` wait for the next.
  RoundVerdict after_round(uint64_t sent_bytes, double seconds, uint64_t written_pages);

  [[nodiscard]] uint64_t rounds() const { return rounds_; }
  // The link rate measured on rounds large enough to tell (bytes/s; 0: not yet).
  [[nodiscard]] double link_rate() const { return link_rate_; }
  // Pages the guest wrote per second during the last round.
  [[nodiscard]] double write_rate_pages() const { return write_rate_; }
  // Whether the guest ever wrote faster than the link sent.
  [[nodiscard]] bool dirtied_faster_than_link() const { return faster_than_link_; }
  // How long sending `pages` would take at the measured rate (ms; unknown rate: a guess from kSmallSet).
  [[nodiscard]] double expected_ms(uint64_t pages) const;
  [[nodiscard]] static const char* name(RoundVerdict v);

  // Bytes a round must send to measure the link by; below it, rounds are too
  // short to time (dominated by the scan and the round trip).
  static constexpr uint64_t kMeasurable = 1ULL << 20;
  // With no rate yet, a set this small is taken to fit.
  static constexpr uint64_t kSmallSet = 256;

 private:
  RoundBudget budget_;
  uint64_t rounds_ = 0;
  double link_rate_ = 0;
  double write_rate_ = 0;
  bool faster_than_link_ = false;
  uint64_t last_written_ = UINT64_MAX;
  unsigned stalled_ = 0;
};

}  // namespace bnf
