// What a transfer's declared size is checked against before anything is
// allocated for it: the largest image, the free space, the host's memory.
#include <gtest/gtest.h>

#include "common/size.hpp"
#include "snapshot/space_check.hpp"
#include "test_util.hpp"

namespace bnf {
namespace {

constexpr uint64_t kGiB = 1ULL << 30;

SpaceAtHand at_hand(uint64_t free_bytes, uint64_t base_bytes = 0, uint64_t memory = 64 * kGiB) {
  return {.free_bytes = free_bytes, .base_bytes = base_bytes, .memory_available = memory, .where = "/state"};
}

TEST(FormatSize, UsesTheLargestBinaryUnitWithOneDecimalAtMost) {
  EXPECT_EQ(format_size(512), "512 bytes");
  EXPECT_EQ(format_size(4096), "4 KiB");
  EXPECT_EQ(format_size(1536ULL << 20), "1.5 GiB");
  EXPECT_EQ(format_size(64ULL << 40), "64 TiB");
  EXPECT_EQ(format_size(63ULL << 20), "63 MiB");
}

TEST(SpaceCheck, ASizeOverTheMaximumIsInvalidAndNamed) {
  Status st = check_image_size(kMaxImageBytes + 4096);
  EXPECT_EQ(st.code(), Errc::invalid_argument);
  EXPECT_NE(st.message().find("over the maximum of 64 TiB"), std::string::npos) << st.message();
  EXPECT_TRUE(check_image_size(kMaxImageBytes).is_ok());
}

TEST(SpaceCheck, TheImageAndItsDigestTableMustFitInTheFreeSpace) {
  // 1 GiB of pages has a 4 MiB digest table: 1 GiB free is not enough, 1.01 GiB is.
  Status st = check_room_for_image(kGiB, 4096, at_hand(kGiB));
  EXPECT_EQ(st.code(), Errc::no_space);
  EXPECT_NE(st.message().find("not enough space for a 1 GiB image: 1 GiB free in /state"), std::string::npos)
      << st.message();
  EXPECT_TRUE(check_room_for_image(kGiB, 4096, at_hand(kGiB + (4ULL << 20))).is_ok());
}

TEST(SpaceCheck, TheSnapshotItReplacesCountsAsRoom) {
  Status st = check_room_for_image(8 * kGiB, 4096, at_hand(kGiB, 4 * kGiB));
  EXPECT_EQ(st.code(), Errc::no_space);
  EXPECT_NE(st.message().find("and 4 GiB held by the snapshot it replaces"), std::string::npos) << st.message();
  EXPECT_TRUE(check_room_for_image(8 * kGiB, 4096, at_hand(kGiB, 8 * kGiB)).is_ok());
}

TEST(SpaceCheck, ADigestTableLargerThanTheHostsMemoryIsRefused) {
  // 16 TiB of pages: a 64 GiB table, with 8 GiB of memory available.
  Status st = check_room_for_image(16ULL << 40, 4096, at_hand(32ULL << 40, 0, 8 * kGiB));
  EXPECT_EQ(st.code(), Errc::no_space);
  EXPECT_NE(st.message().find("not enough memory for the digest table"), std::string::npos) << st.message();
  EXPECT_TRUE(check_room_for_image(16ULL << 40, 4096, at_hand(32ULL << 40, 0, 0)).is_ok());  // unknown: not checked
}

TEST(SpaceCheck, TheStateDirectorysFilesystemIsAsked) {
  test::TempDir d;
  auto at = space_at_hand(d.path(), "");
  ASSERT_TRUE(at.is_ok()) << at.status().message();
  EXPECT_GT(at->free_bytes, 0U);
  EXPECT_EQ(at->base_bytes, 0U);
  EXPECT_EQ(at->where, d.path());
  EXPECT_FALSE(space_at_hand(d.path() + "/missing", "").is_ok());
}

}  // namespace
}  // namespace bnf
