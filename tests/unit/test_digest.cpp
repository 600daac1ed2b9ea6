#include <gtest/gtest.h>

#include <vector>

#include "common/crc32c.hpp"
#include "digest/page_digest.hpp"
#include "test_util.hpp"

namespace bnf {
namespace {

TEST(Crc32c, KnownVector) {
  // CRC-32C of "123456789" is 0xE3069283.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283U);
  const uint32_t part = crc32c_extend(crc32c_init, "1234", 4);
  EXPECT_EQ(crc32c_final(crc32c_extend(part, "56789", 5)), 0xE3069283U);
}

TEST(ZeroDetect, FindsZeroAndNonZeroPages) {
  std::vector<std::byte> page(4096);
  EXPECT_TRUE(is_zero_page(page.data(), page.size()));
  page[4095] = std::byte{1};
  EXPECT_FALSE(is_zero_page(page.data(), page.size()));
}

TEST(PageDigester, KeyedAndContentSensitive) {
  auto img = test::random_image(2, 3);
  PageDigester a(random_digest_key());
  PageDigester b(random_digest_key());
  EXPECT_EQ(a.page(img.data(), 4096), a.page(img.data(), 4096));
  EXPECT_NE(a.page(img.data(), 4096), b.page(img.data(), 4096));  // another key, another digest
  EXPECT_NE(a.page(img.data(), 4096), a.page(img.data() + 4096, 4096));
  std::vector<std::byte> zero(4096);
  EXPECT_EQ(a.page(zero.data(), 4096), a.zero_digest());
  EXPECT_EQ(a.digest(zero.data(), 4096), a.zero_digest());  // the shortcut agrees with the hash
}

TEST(DigestTable, ThreadedComputeMatchesSerialAndRootTracksChanges) {
  auto img = test::random_image(5000, 9, 7);
  PageDigester h(random_digest_key());
  DigestTable one = DigestTable::compute(h, img, 4096, 1);
  DigestTable four = DigestTable::compute(h, img, 4096, 4);
  ASSERT_EQ(one.size(), 5000U);
  for (uint64_t p = 0; p < one.size(); ++p) ASSERT_EQ(one[p], four[p]);
  EXPECT_EQ(one.root(h), four.root(h));
  img[4096 * 1234 + 17] ^= std::byte{1};
  DigestTable changed = DigestTable::compute(h, img, 4096, 2);
  EXPECT_NE(changed.root(h), one.root(h));
  EXPECT_NE(changed[1234], one[1234]);
}

TEST(DigestTable, ChunkDigestsPointAtTheChunkThatDiffers) {
  auto img = test::random_image(1000, 9, 3);  // 1000 pages: the last chunk of 256 is short
  PageDigester h(random_digest_key());
  const DigestTable before = DigestTable::compute(h, img, 4096, 1);
  img[4096 * 900 + 5] ^= std::byte{1};
  const DigestTable after = DigestTable::compute(h, img, 4096, 1);
  const auto a = before.chunk_digests(h, 256);
  const auto b = after.chunk_digests(h, 256);
  ASSERT_EQ(a.size(), 4U);
  ASSERT_EQ(b.size(), 4U);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(a[i], b[i]) << i;
  EXPECT_NE(a[3], b[3]);
}

TEST(DigestHex, RoundTrips) {
  Digest d{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  auto back = digest_from_hex(digest_hex(d));
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(*back, d);
  EXPECT_FALSE(digest_from_hex("xyz").is_ok());
  auto k = random_digest_key();
  auto kb = digest_key_from_hex(to_hex(k));
  ASSERT_TRUE(kb.is_ok());
  EXPECT_EQ(*kb, k);
}

}  // namespace
}  // namespace bnf
