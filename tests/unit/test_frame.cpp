// Wire protocol v1 framing: round trips and strict rejection of bad frames.
#include <gtest/gtest.h>

#include "protocol/frame.hpp"

namespace bnf::proto {
namespace {

TEST(FrameHeader, RoundTrip) {
  FrameHeader h;
  h.type = FrameType::pages;
  h.meta_len = 32;
  h.meta_crc = 0x1234;
  h.payload_len = 8192;
  h.payload_crc = 0xabcd;
  HeaderBytes b = encode_header(h);
  auto back = decode_header(b);
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back->type, FrameType::pages);
  EXPECT_EQ(back->meta_len, 32U);
  EXPECT_EQ(back->payload_len, 8192U);
  EXPECT_EQ(back->payload_crc, 0xabcdU);
}

TEST(FrameHeader, EveryFlippedBitIsRejected) {
  FrameHeader h;
  h.type = FrameType::hello;
  h.meta_len = 10;
  const HeaderBytes good = encode_header(h);
  for (size_t i = 0; i < good.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      HeaderBytes b = good;
      b[i] ^= std::byte(1U << bit);
      EXPECT_FALSE(decode_header(b).is_ok()) << "byte " << i << " bit " << bit;
    }
}

TEST(FrameHeader, UnknownTypeAndOversizedMetaAreNamed) {
  FrameHeader h;
  h.type = static_cast<FrameType>(99);
  auto r = decode_header(encode_header(h));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("unknown frame type 99"), std::string::npos);
  h.type = FrameType::hello;
  h.meta_len = kMaxMetaLen + 1;
  r = decode_header(encode_header(h));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("HELLO metadata length 1048577 over its limit"), std::string::npos);
}

// Every type has its own bound, checked before a byte of metadata is allocated.
TEST(FrameHeader, MetadataIsBoundedPerType) {
  const std::pair<FrameType, uint32_t> limits[] = {
      {FrameType::peer_hello, kMaxPeerMetaLen},  {FrameType::peer_challenge, kMaxPeerMetaLen},
      {FrameType::peer_proof, kMaxPeerMetaLen},  {FrameType::error, kMaxErrorMetaLen},
      {FrameType::hello, kMaxControlMetaLen},    {FrameType::begin, kMaxControlMetaLen},
      {FrameType::vm_hello, kMaxVmHelloMetaLen}, {FrameType::vm_chunks, kMaxMetaLen},
      {FrameType::pages, kMaxMetaLen},           {FrameType::zeros, kMaxMetaLen},
  };
  for (const auto& [type, limit] : limits) {
    EXPECT_EQ(max_meta_len(type), limit) << type_name(type);
    FrameHeader h;
    h.type = type;
    h.meta_len = limit;
    EXPECT_TRUE(decode_header(encode_header(h)).is_ok()) << type_name(type);
    h.meta_len = limit + 1;
    auto r = decode_header(encode_header(h));
    ASSERT_FALSE(r.is_ok()) << type_name(type);
    EXPECT_NE(r.status().message().find(type_name(type)), std::string::npos) << r.status().message();
  }
  EXPECT_LE(kMaxPeerMetaLen, 512U);  // what an unauthenticated peer can make the daemon allocate
}

TEST(FrameHeader, WrongMagicSaysNotABnfPeer) {
  HeaderBytes b{};
  auto r = decode_header(b);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("magic"), std::string::npos);
}

TEST(Runs, RoundTrip) {
  std::vector<PageRun> runs{{0, 3}, {10, 1}, {100, 28}};
  auto back = decode_runs(encode_runs(runs), 128);
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(*back, runs);
  EXPECT_EQ(pages_in(*back), 32U);
}

TEST(Runs, BoundsAreCheckedAgainstTheImage) {
  auto past_end = decode_runs(encode_runs(std::vector<PageRun>{{120, 9}}), 128);
  ASSERT_FALSE(past_end.is_ok());
  EXPECT_NE(past_end.status().message().find("past the image end"), std::string::npos);
  EXPECT_FALSE(decode_runs(encode_runs(std::vector<PageRun>{{128, 1}}), 128).is_ok());
  // count chosen so that first + count overflows 64 bits
  EXPECT_FALSE(decode_runs(encode_runs(std::vector<PageRun>{{5, UINT64_MAX - 2}}), 128).is_ok());
  EXPECT_FALSE(decode_runs(encode_runs(std::vector<PageRun>{{5, 0}}), 128).is_ok());
  EXPECT_FALSE(decode_runs(encode_runs(std::vector<PageRun>{{10, 5}, {12, 1}}), 128).is_ok());  // overlap
  EXPECT_FALSE(decode_runs(encode_runs(std::vector<PageRun>{{10, 1}, {5, 1}}), 128).is_ok());   // order
  EXPECT_FALSE(decode_runs(std::string(15, '\0'), 128).is_ok());                                // ragged
  EXPECT_FALSE(decode_runs("", 128).is_ok());
}

}  // namespace
}  // namespace bnf::proto
