// The source's page filter: what travels, and when (hold-back until QEMU's next
// pass goes by), with QEMU's passes played as sequences of page records.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "bitmap/file_holes.hpp"
#include "protocol/frame.hpp"
#include "vm/source/departure_pages.hpp"

namespace bnf::qemu {
namespace {

constexpr uint64_t kPages = 512;

// Records the frames posted to it: (type, page, first payload byte).
class RecordingConnection final : public transport::Connection {
 public:
  struct Sent {
    proto::FrameType type;
    uint64_t page;
    uint8_t fill;
  };
  Result<transport::RegionHandle> register_region(std::span<const std::byte> region) override {
    return regions->add(region);
  }
  Status post(std::span<const transport::ConstBuffer> parts) override {
    std::array<std::byte, proto::kHeaderSize> hb{};
    std::memcpy(hb.data(), parts[0].data, hb.size());
    auto h = proto::decode_header(hb);
    if (!h.is_ok()) return h.status();
    auto runs = proto::decode_runs({reinterpret_cast<const char*>(parts[1].data), parts[1].size}, kPages);
    if (!runs.is_ok()) return runs.status();
    ++frames;
    for (uint64_t i = 0; i < (*runs)[0].count; ++i) {
      const uint8_t fill = parts.size() > 2 ? static_cast<uint8_t>(parts[2].data[i * 4096]) : 0;
      sent.push_back({h->type, (*runs)[0].first + i, fill});
    }
    return Status::ok();
  }
  Status flush() override { return Status::ok(); }
  Status recv(std::span<std::byte>) override { return {Errc::io, "not used"}; }
  Status recv_scatter(std::span<const transport::MutableBuffer>) override { return {Errc::io, "not used"}; }
  void limit_receives(transport::ReceiveLimits) override {}
  void shutdown() noexcept override {}
  transport::ConnectionStats stats() const override { return {}; }
  std::string peer() const override { return "recording"; }
  std::vector<Sent> sent;
  uint64_t frames = 0;
  std::shared_ptr<transport::RegionTable> regions = std::make_shared<transport::RegionTable>();
};

class DeparturePagesTest : public ::testing::Test {
 protected:
  DeparturePagesTest() : h_(DigestKey{}) {
    // The destination's base: page p filled with byte p.
    DigestTable base(kPages);
    for (uint64_t p = 0; p < kPages; ++p) base[p] = h_.page(page_of(static_cast<uint8_t>(p)).data(), 4096);
    base_ = std::move(base);
  }
  static std::vector<std::byte> page_of(uint8_t fill) { return std::vector<std::byte>(4096, std::byte{fill}); }
  DeparturePages make(bool incremental, size_t budget) {
    return DeparturePages(conn_, h_, incremental ? std::optional(base_) : std::nullopt, kPages,
                          {.incremental = incremental, .hold_budget_bytes = budget});
  }
  // Incremental, with a 200 ms hot window on the test's clock `now_`.
  DeparturePages make_timed() {
    return DeparturePages(conn_, h_, base_, kPages,
                          {.incremental = true,
                           .hold_budget_bytes = 1 << 20,
                           .hot_window = std::chrono::milliseconds(200),
                           .clock = [this] { return now_; }});
  }
  // One QEMU pass (or part of one): the pages it resends, with their new fill
  // byte; then what left the hold-back is posted, to be counted.
  static void pass(DeparturePages& d, std::vector<std::pair<uint64_t, uint8_t>> pages) {
    for (auto [p, fill] : pages) {
      auto bytes = page_of(fill);
      auto keep = d.on_page("ram0", p * 4096, bytes.data());
      ASSERT_TRUE(keep.is_ok()) << keep.status().message();
      EXPECT_FALSE(*keep);
    }
    ASSERT_TRUE(d.flush_batch().is_ok());
  }
  uint64_t sends_of(uint64_t page) const {
    uint64_t n = 0;
    for (const auto& s : conn_.sent) n += s.page == page;
    return n;
  }

  PageDigester h_;
  DigestTable base_;
  RecordingConnection conn_;
  std::chrono::steady_clock::time_point now_;
};

TEST_F(DeparturePagesTest, UnchangedPagesNeverTravel) {
  auto d = make(true, 1 << 20);
  std::vector<std::pair<uint64_t, uint8_t>> all;
  for (uint64_t p = 0; p < kPages; ++p) all.emplace_back(p, static_cast<uint8_t>(p));
  pass(d, all);
  ASSERT_TRUE(d.before_device_state().is_ok());
  EXPECT_TRUE(conn_.sent.empty());
  EXPECT_EQ(d.counts().skipped, kPages - kPages / 256);  // pages filled with byte 0 are zero pages
}

TEST_F(DeparturePagesTest, HotPageTravelsOnceWithItsLastVersion) {
  auto d = make(true, 1 << 20);
  pass(d, {{3, 200}, {10, 201}});
  pass(d, {{3, 202}});  // page 10 clean for a pass: sent as the walk goes by
  pass(d, {{3, 203}, {20, 204}});
  EXPECT_EQ(sends_of(10), 1U);
  EXPECT_EQ(sends_of(3), 0U);  // still hot: held
  ASSERT_TRUE(d.before_device_state().is_ok());
  EXPECT_EQ(sends_of(3), 1U);
  EXPECT_EQ(conn_.sent.back().fill, 204);  // page 20 last; page 3 carried its newest bytes:
  for (const auto& s : conn_.sent) {
    if (s.page == 3) {
      EXPECT_EQ(s.fill, 203);
    }
  }
  EXPECT_EQ(d.counts().superseded, 2U);
  EXPECT_EQ(d.counts().rounds, 3U);
}

TEST_F(DeparturePagesTest, PageCleanForAPassLeavesBeforeTheWalkPassesIt) {
  auto d = make(true, 1 << 20);
  pass(d, {{5, 100}, {30, 101}});
  pass(d, {{2, 100}});
  EXPECT_EQ(sends_of(5), 0U);  // the second pass has not reached page 5 yet
  pass(d, {{6, 100}});         // ... same pass, now past it
  EXPECT_EQ(sends_of(5), 1U);
  EXPECT_EQ(sends_of(30), 0U);
}

// QEMU can make passes a millisecond long (between its 100 ms stop decisions):
// a page the guest rewrites every 100 ms is clean for many of them.
TEST_F(DeparturePagesTest, RapidPassesDoNotReleaseAPageRewrittenWithinTheHotWindow) {
  auto d = make_timed();
  uint8_t fill = 100;
  for (int period = 0; period < 3; ++period) {  // rewritten every 100 ms, ...
    pass(d, {{7, fill++}});
    for (int i = 0; i < 100; ++i) {  // ... 1 ms passes in between
      now_ += std::chrono::milliseconds(1);
      pass(d, {{1, 1}});  // unchanged: skipped
    }
  }
  EXPECT_EQ(sends_of(7), 0U);
  now_ += std::chrono::milliseconds(99);
  pass(d, {{1, 1}});
  EXPECT_EQ(sends_of(7), 0U);  // last rewritten 199 ms ago: still cooling
  now_ += std::chrono::milliseconds(1);
  pass(d, {{1, 1}});
  ASSERT_EQ(sends_of(7), 1U);  // clean for the window: sent, with its last version
  EXPECT_EQ(conn_.sent.back().fill, fill - 1);
  ASSERT_TRUE(d.before_device_state().is_ok());
  EXPECT_EQ(sends_of(7), 1U);
}

TEST_F(DeparturePagesTest, CoolingPageRewrittenIsHotAgain) {
  auto d = make_timed();
  pass(d, {{7, 100}});
  pass(d, {{1, 1}});
  pass(d, {{1, 1}});  // clean for a pass, within the window: cooling
  now_ += std::chrono::milliseconds(150);
  pass(d, {{7, 101}});  // rewritten: hot again, its clock restarts
  now_ += std::chrono::milliseconds(150);
  pass(d, {{1, 1}});
  pass(d, {{1, 1}});
  EXPECT_EQ(sends_of(7), 0U);
  ASSERT_TRUE(d.before_device_state().is_ok());  // the stop sends whatever is held, once
  ASSERT_EQ(sends_of(7), 1U);
  EXPECT_EQ(conn_.sent.back().fill, 101);
}

TEST_F(DeparturePagesTest, BudgetExhaustedPagesGoAtOnce) {
  auto d = make(true, 2 * 4096);
  pass(d, {{1, 90}, {2, 91}, {3, 92}, {4, 93}});
  EXPECT_EQ(sends_of(1) + sends_of(2), 0U);
  EXPECT_EQ(sends_of(3), 1U);
  EXPECT_EQ(sends_of(4), 1U);
}

TEST_F(DeparturePagesTest, FullTripSendsEveryVersionAtOnce) {
  auto d = make(false, 1 << 20);
  pass(d, {{1, 90}, {2, 91}});
  EXPECT_EQ(conn_.sent.size(), 2U);
  pass(d, {{1, 92}});
  EXPECT_EQ(sends_of(1), 2U);
  EXPECT_EQ(d.counts().superseded, 0U);
}

TEST_F(DeparturePagesTest, DepartureTableIsTheLastVersionOfEveryPage) {
  auto d = make(true, 1 << 20);
  pass(d, {{7, 1}});
  pass(d, {{7, 2}});
  ASSERT_TRUE(d.before_device_state().is_ok());
  EXPECT_EQ(d.departure()[7], h_.page(page_of(2).data(), 4096));
  EXPECT_EQ(d.departure()[8], base_[8]);
}

TEST_F(DeparturePagesTest, ConsecutivePagesTravelInOneFrame) {
  auto d = make(false, 0);
  pass(d, {{10, 1}, {11, 2}, {12, 3}, {20, 4}});
  ASSERT_EQ(conn_.sent.size(), 4U);
  EXPECT_EQ(conn_.frames, 2U);  // 10-12, then 20
  EXPECT_EQ(conn_.sent[2].fill, 3);
}

TEST_F(DeparturePagesTest, ABatchNeverCrossesAShardChunk) {
  auto d = make(false, 0);
  pass(d, {{254, 1}, {255, 2}, {256, 3}, {257, 4}});
  EXPECT_EQ(conn_.frames, 2U);  // 254-255 | 256-257: the receiver refuses runs across chunks
}

TEST_F(DeparturePagesTest, ZeroPageAfterABatchedVersionKeepsTheOrder) {
  auto d = make(false, 0);
  auto bytes = page_of(7);
  ASSERT_TRUE(d.on_page("ram0", 5 * 4096, bytes.data()).is_ok());
  ASSERT_TRUE(d.on_zero("ram0", 5 * 4096).is_ok());
  ASSERT_TRUE(d.before_device_state().is_ok());
  ASSERT_EQ(conn_.sent.size(), 2U);
  EXPECT_EQ(conn_.sent[0].type, proto::FrameType::pages);
  EXPECT_EQ(conn_.sent[1].type, proto::FrameType::zeros);
}

TEST_F(DeparturePagesTest, SwitchoverCheckResendsWhatQemuMissed) {
  // The VM's RAM as it is at the stop: page 9 changed after QEMU last sent it.
  std::vector<std::byte> ram(kPages * 4096);
  for (uint64_t p = 0; p < kPages; ++p) std::memset(ram.data() + p * 4096, static_cast<int>(p & 0xFF), 4096);
  std::memset(ram.data() + 9 * 4096, 0x77, 4096);
  auto d = DeparturePages(conn_, h_, base_, kPages,
                          {.incremental = true, .hold_budget_bytes = 1 << 20, .switchover_check = ram});
  pass(d, {{3, 50}});
  std::memset(ram.data() + 3 * 4096, 51, 4096);  // the VM's last write before the stop
  ASSERT_TRUE(d.on_final_ram_section().is_ok());
  pass(d, {{3, 51}});  // the final section: page 3 resent, page 9 not
  ASSERT_TRUE(d.before_device_state().is_ok());
  EXPECT_EQ(d.counts().fixed_at_switchover, 1U);
  EXPECT_EQ(sends_of(9), 1U);
  for (const auto& s : conn_.sent) {
    if (s.page == 9) {
      EXPECT_EQ(s.fill, 0x77);
    }
  }
  EXPECT_EQ(d.departure()[9], h_.page(ram.data() + 9 * 4096, 4096));
}

// Names the pages the test wrote since the trip began.
class ListedWrites final : public WriteTracker {
 public:
  explicit ListedWrites(PageBitmap written) : written_(std::move(written)) {}
  Result<PageBitmap> changed_since_start() override { return written_; }
  Result<PageBitmap> take_changed() override { return written_; }

 private:
  PageBitmap written_;
};

TEST_F(DeparturePagesTest, WithQemusWritesTrackedOnlyWrittenAndUnsentPagesAreHashedAgain) {
  std::vector<std::byte> ram(kPages * 4096);
  for (uint64_t p = 0; p < kPages; ++p) std::memset(ram.data() + p * 4096, static_cast<int>(p & 0xFF), 4096);
  PageBitmap written(kPages);
  written.set(9);
  auto d = DeparturePages(conn_, h_, base_, kPages,
                          {.incremental = true,
                           .hold_budget_bytes = 1 << 20,
                           .switchover_check = ram,
                           .write_tracker = std::make_unique<ListedWrites>(written)});
  std::vector<std::pair<uint64_t, uint8_t>> first_pass;
  for (uint64_t p = 0; p < kPages; ++p)
    if (p != 20) first_pass.emplace_back(p, static_cast<uint8_t>(p));  // page 20 never sent
  pass(d, first_pass);
  std::memset(ram.data() + 9 * 4096, 0x77, 4096);  // written after QEMU sent it; QEMU misses it
  ASSERT_TRUE(d.on_final_ram_section().is_ok());
  ASSERT_TRUE(d.before_device_state().is_ok());
  EXPECT_EQ(d.counts().hashed_at_stop, 2U);  // page 9 (written) and page 20 (not sent)
  EXPECT_EQ(d.counts().fixed_at_switchover, 1U);
  EXPECT_EQ(sends_of(9), 1U);
  EXPECT_EQ(d.departure()[9], h_.page(ram.data() + 9 * 4096, 4096));
}

// The RAM file's holes at the stop are zero pages: compared as such without
// being read (reading one through a tmpfs mapping allocates it, and the
// retained snapshot would fill with zeros at every trip).
TEST_F(DeparturePagesTest, TheCheckKnowsTheRamFilesHolesAreZeroWithoutReadingThem) {
  const int fd = ::memfd_create("ram", 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, kPages * 4096), 0);
  for (uint64_t p = 0; p < kPages / 2; ++p)  // the first half as the base has it; the second a hole
    ASSERT_EQ(::pwrite(fd, page_of(static_cast<uint8_t>(p)).data(), 4096, static_cast<off_t>(p * 4096)), 4096);
  auto* map = static_cast<std::byte*>(::mmap(nullptr, kPages * 4096, PROT_READ, MAP_SHARED, fd, 0));
  ASSERT_NE(map, MAP_FAILED);
  {
    auto d = DeparturePages(conn_, h_, base_, kPages,
                            {.incremental = true,
                             .hold_budget_bytes = 1 << 20,
                             .switchover_check = std::span<const std::byte>(map, kPages * 4096),
                             .ram_file = fd});
    ASSERT_TRUE(d.on_final_ram_section().is_ok());
    ASSERT_TRUE(d.before_device_state().is_ok());
    EXPECT_EQ(d.counts().hashed_at_stop, kPages / 2);  // the data pages only
    // The holes differ from the base (page p filled with p) but where p's low byte is 0.
    EXPECT_EQ(d.counts().fixed_at_switchover, kPages / 2 - 1);
    EXPECT_EQ(d.departure()[kPages - 1], h_.zero_digest());
    EXPECT_EQ(d.departure()[3], base_[3]);
  }
  Result<PageBitmap> holes = file_holes(fd, kPages);
  ASSERT_TRUE(holes.is_ok()) << holes.status().message();
  EXPECT_EQ(holes->count(), kPages / 2);  // not read, so not allocated
  ::munmap(map, kPages * 4096);
  ::close(fd);
}

TEST_F(DeparturePagesTest, OffsetPastTheBlockIsAnError) {
  auto d = make(true, 1 << 20);
  auto bytes = page_of(1);
  EXPECT_FALSE(d.on_page("ram0", kPages * 4096, bytes.data()).is_ok());
  auto keep = d.on_page("pc.rom", 0, bytes.data());
  ASSERT_TRUE(keep.is_ok());
  EXPECT_TRUE(*keep);  // other blocks stay in the stream
}

}  // namespace
}  // namespace bnf::qemu
