// WritesSinceArrival: the pages a guest wrote since its VM arrived, kept
// across the takes of shared mode's rounds.
#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <utility>

#include "bitmap/writes_since_arrival.hpp"

namespace bnf {
namespace {

constexpr uint64_t kPages = 64;

PageBitmap pages_of(std::initializer_list<uint64_t> ps) {
  PageBitmap b(kPages);
  for (uint64_t p : ps) b.set(p);
  return b;
}

// Answers each take with the next scripted set (or error); what a
// take has not yet named stays in changed_since_start().
class ScriptedTracker final : public WriteTracker {
 public:
  explicit ScriptedTracker(std::deque<Result<PageBitmap>> takes) : takes_(std::move(takes)) {}
  Result<PageBitmap> take_changed() override {
    Result<PageBitmap> next = std::move(takes_.front());
    takes_.pop_front();
    return next;
  }
  Result<PageBitmap> changed_since_start() override { return takes_.front(); }

 private:
  std::deque<Result<PageBitmap>> takes_;
};

WritesSinceArrival scripted(std::deque<Result<PageBitmap>> takes) {
  return {std::make_unique<ScriptedTracker>(std::move(takes)), kPages};
}

TEST(WritesSinceArrival, SinceArrivalHoldsEveryPageEarlierTakesNamed) {
  std::deque<Result<PageBitmap>> takes;
  takes.emplace_back(pages_of({1, 2}));
  takes.emplace_back(pages_of({7}));
  takes.emplace_back(pages_of({2, 40}));
  WritesSinceArrival w = scripted(std::move(takes));
  // Two rounds of a trip that then failed took {1,2} and {7}.
  ASSERT_EQ(w.take_changed()->count(), 2U);
  ASSERT_EQ(w.take_changed()->count(), 1U);
  // The next trip's round 0 still gets them, with what was written since.
  Result<PageBitmap> all = w.since_arrival();
  ASSERT_TRUE(all.is_ok()) << all.status().message();
  EXPECT_EQ(all->count(), 4U);
  for (uint64_t p : {1, 2, 7, 40}) EXPECT_TRUE(all->test(p)) << p;
  EXPECT_FALSE(all->test(3));
}

TEST(WritesSinceArrival, ChangedSinceStartIsTheTakenPagesAndTheUntaken) {
  std::deque<Result<PageBitmap>> takes;
  takes.emplace_back(pages_of({5}));
  takes.emplace_back(pages_of({9}));
  WritesSinceArrival w = scripted(std::move(takes));
  ASSERT_TRUE(w.take_changed().is_ok());
  Result<PageBitmap> changed = w.changed_since_start();
  ASSERT_TRUE(changed.is_ok());
  EXPECT_EQ(changed->count(), 2U);
  EXPECT_TRUE(changed->test(5));
  EXPECT_TRUE(changed->test(9));
}

TEST(WritesSinceArrival, AFailedTakeFailsAndKeepsWhatWasTaken) {
  std::deque<Result<PageBitmap>> takes;
  takes.emplace_back(pages_of({3}));
  takes.emplace_back(Status(Errc::io, "PAGEMAP_SCAN failed"));
  takes.emplace_back(pages_of({}));
  WritesSinceArrival w = scripted(std::move(takes));
  ASSERT_TRUE(w.take_changed().is_ok());
  Result<PageBitmap> failed = w.since_arrival();
  ASSERT_FALSE(failed.is_ok());
  EXPECT_EQ(failed.status().code(), Errc::io);
  Result<PageBitmap> again = w.since_arrival();
  ASSERT_TRUE(again.is_ok());
  EXPECT_TRUE(again->test(3));
}

TEST(WritesSinceArrival, OnlyTheArrivalItWasArmedForMayUseIt) {
  std::deque<Result<PageBitmap>> takes;
  WritesSinceArrival w = scripted(std::move(takes));
  EXPECT_FALSE(w.is_of("lineage-a", 4));  // not committed yet
  w.arrived_as("lineage-a", 4);
  EXPECT_TRUE(w.is_of("lineage-a", 4));
  EXPECT_FALSE(w.is_of("lineage-a", 3));
  EXPECT_FALSE(w.is_of("lineage-b", 4));
}

TEST(ArrivalTracking, LosingTheTrackerSaysWhy) {
  ArrivalTracking t{
      std::make_unique<WritesSinceArrival>(std::make_unique<ScriptedTracker>(std::deque<Result<PageBitmap>>{}), kPages),
      ""};
  t.lose("the VM left");
  EXPECT_EQ(t.writes, nullptr);
  EXPECT_EQ(t.lost_because, "the VM left");
}

}  // namespace
}  // namespace bnf
