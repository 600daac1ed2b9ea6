#include <gtest/gtest.h>

#include <cstring>

#include "filter/page_filter.hpp"
#include "filter/stream_filter.hpp"
#include "test_util.hpp"

namespace bnf {
namespace {

constexpr uint64_t kPages = 1000;

struct FilterFixture : ::testing::Test {
  PageDigester h{random_digest_key()};
  std::vector<std::byte> base_img = test::random_image(kPages, 1, 10);  // every 10th page zero
  DigestTable base = DigestTable::compute(h, base_img, 4096, 1);
  std::byte* page(std::vector<std::byte>& img, uint64_t p) { return img.data() + p * 4096; }
};

TEST_F(FilterFixture, FullTransferSendsEveryNonZeroPage) {
  PagePlan plan = plan_pages({base_img, 4096, &h, nullptr, nullptr, 2});
  EXPECT_EQ(plan.pages_zero, 100U);
  EXPECT_EQ(plan.pages_sent, 900U);
  EXPECT_EQ(plan.send.count(), 900U);
  EXPECT_EQ(plan.zero.count(), 0U);  // a new image is zero already: nothing to say about zero pages
  EXPECT_EQ(plan.table.root(h), base.root(h));
}

TEST_F(FilterFixture, DigestScanFindsExactlyTheChangedPages) {
  auto now = base_img;
  test::fill_page(page(now, 3), 77);   // changed
  std::memset(page(now, 5), 0, 4096);  // became zero
  test::fill_page(page(now, 20), 78);  // was zero, now data
  auto same = test::random_image(kPages, 1, 10);
  std::memcpy(page(now, 7), same.data() + 7 * 4096, 4096);  // rewritten with identical bytes: no cost
  PagePlan plan = plan_pages({now, 4096, &h, &base, nullptr, 2});
  EXPECT_EQ(plan.pages_sent, 2U);
  EXPECT_TRUE(plan.send.test(3));
  EXPECT_TRUE(plan.send.test(20));
  EXPECT_EQ(plan.pages_zero, 1U);
  EXPECT_TRUE(plan.zero.test(5));
  EXPECT_EQ(plan.pages_skipped, kPages - 3);
  EXPECT_EQ(plan.table.root(h), DigestTable::compute(h, now, 4096, 1).root(h));
}

TEST_F(FilterFixture, DirtyBitmapLimitsTheScanAndStillDropsRewritesWithSameBytes) {
  auto now = base_img;
  test::fill_page(page(now, 42), 5);
  PageBitmap dirty(kPages);
  dirty.set(42);
  dirty.set(43);  // flagged but unchanged: digests say it costs nothing
  PagePlan plan = plan_pages({now, 4096, &h, &base, &dirty, 1});
  EXPECT_EQ(plan.pages_sent, 1U);
  EXPECT_TRUE(plan.send.test(42));
  EXPECT_EQ(plan.pages_skipped, kPages - 1);
  EXPECT_EQ(plan.table.root(h), DigestTable::compute(h, now, 4096, 1).root(h));
}

// The streaming filter against a base: a record equal to the base is
// skipped, a changed one let through once, the same version again skipped,
// and a change back to the base's bytes let through (the receiver holds the
// changed version by then).
TEST_F(FilterFixture, StreamFilterLetsEachNewVersionThroughOnce) {
  StreamFilter f(h, base, kPages);
  auto now = base_img;
  EXPECT_EQ(f.offer(5, h.page(page(now, 5), 4096)), StreamFilter::Verdict::skip);
  page(now, 5)[0] ^= std::byte{1};
  const Digest changed = h.page(page(now, 5), 4096);
  EXPECT_EQ(f.offer(5, changed), StreamFilter::Verdict::send);
  EXPECT_EQ(f.offer(5, changed), StreamFilter::Verdict::skip);
  EXPECT_EQ(f.receiver()[5], changed);
  EXPECT_EQ(f.offer(5, base[5]), StreamFilter::Verdict::send);
  EXPECT_EQ(f.receiver().root(h), base.root(h));
}

// No base: the receiver's new image is all zero pages, so zero records are
// skipped and every other page is let through.
TEST_F(FilterFixture, StreamFilterWithoutBaseSkipsOnlyZeroPages) {
  StreamFilter f(h, std::nullopt, kPages);
  uint64_t sent = 0;
  for (uint64_t p = 0; p < kPages; ++p) {
    const Digest d = h.page(page(base_img, p), 4096);
    EXPECT_EQ(f.is_zero(d), p % 10 == 0);
    sent += f.offer(p, d) == StreamFilter::Verdict::send ? 1 : 0;
  }
  EXPECT_EQ(sent, 900U);
  EXPECT_EQ(f.receiver().root(h), base.root(h));
}

}  // namespace
}  // namespace bnf
