// RoundPlanner: when shared mode's precopy stops going round.
#include <gtest/gtest.h>

#include "precopy/round_planner.hpp"

namespace bnf {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;
constexpr double kGbit = 125e6;  // bytes/s

TEST(RoundPlanner, StopsOnceTheWrittenSetFitsHalfTheBudgetAtTheMeasuredRate) {
  RoundPlanner p({.downtime_ms = 300, .max_rounds = 30});
  // Round 0: 1 GiB at 1 Gbit/s, 40000 pages written meanwhile (156 MiB: 1.3 s at that rate).
  EXPECT_EQ(p.after_round(1024 * kMiB, 1024 * kMiB / kGbit, 40000), RoundVerdict::again);
  EXPECT_NEAR(p.link_rate(), kGbit, 1);
  // 156 MiB in 1.3 s; the 4000 pages written meanwhile take 131 ms, within half of 300 ms.
  EXPECT_EQ(p.after_round(40000 * 4096, 40000 * 4096 / kGbit, 4000), RoundVerdict::fits);
  EXPECT_EQ(p.rounds(), 1U);
  EXPECT_FALSE(p.dirtied_faster_than_link());
}

TEST(RoundPlanner, AnIdleGuestStopsAfterRoundZero) {
  RoundPlanner p({});
  EXPECT_EQ(p.after_round(64 * kMiB, 0.5, 3), RoundVerdict::fits);
  EXPECT_EQ(p.rounds(), 0U);
}

TEST(RoundPlanner, WithoutAMeasuredRateOnlyASmallSetFits) {
  RoundPlanner p({});
  // A back trip whose round 0 sent too little to time the link.
  EXPECT_EQ(p.after_round(100 * 4096, 0.001, RoundPlanner::kSmallSet + 1), RoundVerdict::again);
  EXPECT_EQ(p.link_rate(), 0);
  EXPECT_EQ(p.after_round(200 * 4096, 0.001, RoundPlanner::kSmallSet), RoundVerdict::fits);
}

TEST(RoundPlanner, AGuestWritingFasterThanTheLinkIsNamedAndGivenUpOn) {
  RoundPlanner p({.downtime_ms = 300, .max_rounds = 30, .stalled_rounds = 3});
  // Each round: 100 MiB sent in 0.8 s; the guest wrote 30000 pages (117 MiB) meanwhile.
  EXPECT_EQ(p.after_round(100 * kMiB, 0.8, 30000), RoundVerdict::again);
  RoundVerdict v = RoundVerdict::again;
  int rounds = 0;
  while (v == RoundVerdict::again && rounds < 10) {
    v = p.after_round(100 * kMiB, 0.8, 30000);
    ++rounds;
  }
  EXPECT_EQ(v, RoundVerdict::not_converging);
  EXPECT_EQ(rounds, 3);
  EXPECT_TRUE(p.dirtied_faster_than_link());
}

TEST(RoundPlanner, StopsAtTheRoundLimitWhileTheSetStillShrinksSlowly) {
  RoundPlanner p({.downtime_ms = 10, .max_rounds = 4});
  uint64_t written = 100000;
  RoundVerdict v = p.after_round(400 * kMiB, 4, written);
  while (v == RoundVerdict::again) v = p.after_round(8 * kMiB, 0.1, --written);
  EXPECT_EQ(v, RoundVerdict::round_limit);
  EXPECT_EQ(p.rounds(), 4U);
}

TEST(RoundPlanner, ExpectedTimeFollowsTheMeasuredRate) {
  RoundPlanner p({});
  (void)p.after_round(10 * kMiB, 0.1, 1'000'000);  // 100 MiB/s
  EXPECT_NEAR(p.expected_ms(25600), 1000, 1);      // 100 MiB
}

}  // namespace
}  // namespace bnf
