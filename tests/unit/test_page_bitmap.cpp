#include <gtest/gtest.h>

#include <random>
#include <set>
#include <thread>

#include "bitmap/page_bitmap.hpp"

namespace bnf {
namespace {

TEST(PageBitmap, SetTestClear) {
  PageBitmap bm(130);
  EXPECT_FALSE(bm.test(129));
  bm.set(129);
  bm.set(0);
  EXPECT_TRUE(bm.test(129));
  EXPECT_TRUE(bm.test(0));
  EXPECT_EQ(bm.count(), 2U);
  bm.clear(129);
  EXPECT_FALSE(bm.test(129));
  EXPECT_FALSE(bm.test_and_set(5));
  EXPECT_TRUE(bm.test_and_set(5));
}

TEST(PageBitmap, FindNextSetAndClear) {
  PageBitmap bm(300);
  bm.set(7);
  bm.set(64);
  bm.set(299);
  EXPECT_EQ(bm.find_next_set(0), 7U);
  EXPECT_EQ(bm.find_next_set(8), 64U);
  EXPECT_EQ(bm.find_next_set(65), 299U);
  EXPECT_EQ(bm.find_next_set(300), PageBitmap::npos);
  bm.set_all();
  EXPECT_EQ(bm.count(), 300U);
  EXPECT_EQ(bm.find_next_clear(0), PageBitmap::npos);
  bm.clear(200);
  EXPECT_EQ(bm.find_next_clear(0), 200U);
}

TEST(PageBitmap, RunsMatchASlowModel) {
  std::mt19937_64 rng(1);
  PageBitmap bm(5000);
  std::set<uint64_t> model;
  for (int i = 0; i < 2000; ++i) {
    uint64_t p = rng() % 5000;
    bm.set(p);
    model.insert(p);
  }
  bm.set_range(100, 300);
  for (uint64_t p = 100; p < 400; ++p) model.insert(p);
  bm.clear_range(3, 200);  // a partial word, whole words, a partial word
  for (uint64_t p = 3; p < 203; ++p) model.erase(p);
  uint64_t total = 0;
  uint64_t prev_end = 0;
  for (const PageRun& r : bm.runs()) {
    EXPECT_GT(r.count, 0U);
    if (total > 0) {
      EXPECT_GT(r.first, prev_end);  // maximal runs: a gap between them
    }
    for (uint64_t p = r.first; p < r.first + r.count; ++p) EXPECT_TRUE(model.count(p)) << p;
    total += r.count;
    prev_end = r.first + r.count;
  }
  EXPECT_EQ(total, model.size());
  EXPECT_EQ(bm.count(), model.size());
}

TEST(PageBitmap, UniteAndSubtract) {
  PageBitmap a(100);
  PageBitmap b(100);
  a.set_range(0, 10);
  b.set_range(5, 10);
  ASSERT_TRUE(a.unite(b).is_ok());
  EXPECT_EQ(a.count(), 15U);
  ASSERT_TRUE(a.subtract(b).is_ok());
  EXPECT_EQ(a.count(), 5U);
  EXPECT_EQ(a.find_next_set(5), PageBitmap::npos);
  PageBitmap c(99);
  EXPECT_EQ(a.unite(c).code(), Errc::mismatch);
}

TEST(PageBitmap, SerializeRoundTripBothEncodings) {
  PageBitmap sparse(262144);
  sparse.set(3);
  sparse.set_range(1000, 50);
  PageBitmap dense(1000);
  for (uint64_t p = 0; p < 1000; p += 2) dense.set(p);
  for (const PageBitmap* bm : {&sparse, &dense}) {
    const std::string s = bm->serialize();
    auto back = PageBitmap::deserialize(s);
    ASSERT_TRUE(back.is_ok()) << back.status().message();
    EXPECT_TRUE(*back == *bm);
  }
  EXPECT_LT(sparse.serialize().size(), 100U);  // compact: a run list, not 32 KiB of words
}

TEST(PageBitmap, DeserializeRejectsDamage) {
  PageBitmap bm(1000);
  bm.set_range(10, 20);
  std::string s = bm.serialize();
  for (size_t i = 0; i < s.size(); ++i) {
    std::string bad = s;
    bad[i] ^= 0x10;
    EXPECT_FALSE(PageBitmap::deserialize(bad).is_ok()) << "flip at " << i;
  }
  EXPECT_FALSE(PageBitmap::deserialize(s.substr(0, s.size() - 1)).is_ok());
  EXPECT_FALSE(PageBitmap::deserialize("").is_ok());
}

TEST(PageBitmap, ConcurrentSetsAreNotLost) {
  PageBitmap bm(64 * 1024);
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (uint64_t p = t; p < bm.size(); p += 4) bm.set(p);
    });
  for (auto& th : ts) th.join();
  EXPECT_EQ(bm.count(), bm.size());
}

}  // namespace
}  // namespace bnf
