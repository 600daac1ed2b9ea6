// LiveDigestTable with a tracker that reports what this test wrote: the table
// it finishes is the memory's table at the finish, whatever was hashed ahead.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>

#include "bitmap/file_holes.hpp"
#include "digest/live_digest_table.hpp"
#include "test_util.hpp"

namespace bnf {
namespace {

constexpr uint64_t kPages = 4096;
constexpr uint64_t kPage = 4096;

// Names the pages the test says it wrote; or fails, if told to.
class ListedWrites final : public WriteTracker {
 public:
  explicit ListedWrites(PageBitmap& written, bool fail = false) : written_(written), fail_(fail) {}
  Result<PageBitmap> changed_since_start() override {
    if (fail_) return Status(Errc::io, "scan failed");
    return written_;
  }
  Result<PageBitmap> take_changed() override { return changed_since_start(); }

 private:
  PageBitmap& written_;
  bool fail_;
};

// A ListedWrites over `written`, failing at the stop if told to.
std::unique_ptr<WriteTracker> listed(PageBitmap& written, bool fail_at_stop = false) {
  return std::make_unique<ListedWrites>(written, fail_at_stop);
}

// A page-aligned mapping, as a VM's RAM is (madvise needs that).
struct Memory {
  Memory() {
    void* p = ::mmap(nullptr, kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bytes = std::span(static_cast<std::byte*>(p), kPages * kPage);
    const std::vector<std::byte> image = test::random_image(kPages, 7, 5);
    std::memcpy(bytes.data(), image.data(), image.size());
  }
  ~Memory() { ::munmap(bytes.data(), bytes.size()); }
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;
  std::span<std::byte> bytes;
  PageBitmap written{kPages};
  void write(uint64_t p, uint64_t seed) {
    test::fill_page(bytes.data() + p * kPage, seed);
    written.set(p);
  }
  [[nodiscard]] std::span<const std::byte> span() const { return bytes; }
};

// Keeps every core busy while it lives.
class BusyCores {
 public:
  BusyCores() {
    for (unsigned i = 0; i < std::thread::hardware_concurrency(); ++i)
      spinners_.emplace_back([this] {
        while (busy_) {
        }
      });
  }
  ~BusyCores() {
    busy_ = false;
    for (auto& s : spinners_) s.join();
  }
  BusyCores(const BusyCores&) = delete;
  BusyCores& operator=(const BusyCores&) = delete;

 private:
  std::atomic<bool> busy_{true};
  std::vector<std::thread> spinners_;
};

void wait_reached(const LiveDigestTable& t) {
  while (t.pages_not_reached() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

TEST(LiveDigestTable, HashesOnlyWhatChangedSinceItsHashesAtTheFinish) {
  const PageDigester h(random_digest_key());
  Memory m;
  LiveDigestTable live(h, m.span(), listed(m.written), "", {.when_idle = false, .step_pages = 256});
  wait_reached(live);
  for (uint64_t p : {0, 5, 4095}) m.write(p, p + 100);
  const DigestTable t = live.finish(2);
  EXPECT_EQ(t.root(h), DigestTable::compute(h, m.span(), kPage, 1).root(h));
  EXPECT_EQ(live.counts().hashed_ahead, kPages);
  EXPECT_EQ(live.counts().hashed_at_stop, 3U);
}

TEST(LiveDigestTable, CountsThePagesWrittenSinceTrackingStarted) {
  const PageDigester h(random_digest_key());
  Memory m;
  LiveDigestTable live(h, m.span(), listed(m.written), "", {.when_idle = false});
  m.write(1, 1);
  m.write(2, 2);
  ASSERT_TRUE(live.pages_written().is_ok());
  EXPECT_EQ(*live.pages_written(), 2U);
  LiveDigestTable untracked(h, m.span(), nullptr, "none here");
  EXPECT_FALSE(untracked.pages_written().is_ok());
}

TEST(LiveDigestTable, WithoutATrackerTheStepsOnlyFaultTheMappingIn) {
  const PageDigester h(random_digest_key());
  Memory m;
  LiveDigestTable live(h, m.span(), nullptr, "not allowed", {.when_idle = false, .step_pages = 256});
  while (live.counts().faulted_in < kPages) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(live.tracking());
  EXPECT_EQ(live.counts().hashed_ahead, 0U);
  m.write(7, 7);
  const DigestTable t = live.finish(2);
  EXPECT_EQ(t.root(h), DigestTable::compute(h, m.span(), kPage, 1).root(h));
  EXPECT_EQ(live.counts().hashed_at_stop, kPages);
  EXPECT_EQ(live.counts().not_tracked_because, "not allowed");
}

TEST(LiveDigestTable, WithoutATrackerEveryPageIsHashedAtTheFinish) {
  const PageDigester h(random_digest_key());
  Memory m;
  LiveDigestTable live(h, m.span(), nullptr, "off");
  EXPECT_FALSE(live.tracking());
  m.write(9, 1);
  const PageBitmap final_pages = live.finish_written(2);
  EXPECT_EQ(final_pages.count(), kPages);  // all hashed in the downtime
  const DigestTable t = live.finish(2);
  EXPECT_EQ(t.root(h), DigestTable::compute(h, m.span(), kPage, 1).root(h));
  EXPECT_EQ(live.counts().hashed_at_stop, kPages);
  EXPECT_EQ(live.counts().hashed_after, 0U);
}

// Tracked since before the pass, the downtime hashes only what was written;
// the pages neither written nor reached are left for finish(), and the table
// it gives is the memory's.
TEST(LiveDigestTable, TheDowntimeHashesOnlyTheWrittenPagesAndTheRestFollows) {
  const PageDigester h(random_digest_key());
  Memory m;
  LiveDigestTable live(h, m.span(), listed(m.written), "", {.when_idle = false, .step_pages = 1024});
  while (live.pages_not_reached() == kPages) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  m.write(3, 1);     // reached (or not): written, so hashed in the downtime
  m.write(4090, 2);  // likewise
  const PageBitmap final_pages = live.finish_written(2);
  const uint64_t reached = kPages - live.pages_not_reached();
  EXPECT_EQ(live.counts().hashed_at_stop, 2U);
  EXPECT_EQ(final_pages.count(), reached + (4090 >= reached ? 1 : 0) + (3 >= reached ? 1 : 0));
  EXPECT_TRUE(final_pages.test(3) && final_pages.test(4090));
  const DigestTable whole = DigestTable::compute(h, m.span(), kPage, 1);
  for (uint64_t p = 0; p < kPages; ++p) {
    if (final_pages.test(p)) {
      ASSERT_EQ(live.table()[p], whole[p]) << p;
    }
  }
  const DigestTable t = live.finish(2);
  EXPECT_EQ(t.root(h), whole.root(h));
  EXPECT_EQ(live.counts().hashed_after, kPages - final_pages.count());
}

// A departure hands the live table on to hash its rest while the VM resumes
// elsewhere, after the trip that made it (and its digester) returned. Before
// the table kept a copy, that rest was hashed with whatever key the freed
// digester's memory then held (the Linux guest's first trip, under ASan:
// destination_differs in 2 of 5 runs).
TEST(LiveDigestTable, TheRestIsHashedWithItsOwnCopyOfTheDigester) {
  const DigestKey key = random_digest_key();
  Memory m;
  auto maker = std::make_unique<PageDigester>(key);
  // when_idle: nothing is hashed ahead for 100 ms, so the rest is most pages
  LiveDigestTable live(*maker, m.span(), listed(m.written), "", {.when_idle = true, .step_pages = 1024});
  m.write(9, 1);
  const PageBitmap final_pages = live.finish_written(2);
  ASSERT_LT(final_pages.count(), kPages);  // something is left for the rest
  maker.reset();
  const auto other = std::make_unique<PageDigester>(random_digest_key());  // likely where the freed one was
  const PageDigester h(key);
  EXPECT_EQ(live.finish(2).root(h), DigestTable::compute(h, m.span(), kPage, 1).root(h));
}

// A tracker started after QEMU's pass began: the pages QEMU may have read
// before are compared in the downtime though nothing wrote them; and the RAM
// file's holes are zero pages, known without reading them (reading one on
// tmpfs would allocate it).
TEST(LiveDigestTable, PagesReadBeforeTrackingAndHolesAreFinalAtTheStop) {
  const PageDigester h(random_digest_key());
  const int fd = ::memfd_create("ram", 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, kPages * kPage), 0);
  const std::vector<std::byte> data = test::random_image(kPages / 2, 9, 0);                 // no zero pages
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));  // second half: a hole
  auto* map = static_cast<std::byte*>(::mmap(nullptr, kPages * kPage, PROT_READ, MAP_SHARED, fd, 0));
  ASSERT_NE(map, MAP_FAILED);
  const std::span<const std::byte> ram(map, kPages * kPage);
  PageBitmap written(kPages);
  written.set(10);
  {
    // Hashes ahead only after 100 ms with idle CPU: not before the finish here.
    LiveDigestTable live(h, ram, listed(written), "", {.when_idle = true, .read_before_tracking = 100, .ram_file = fd});
    const PageBitmap final_pages = live.finish_written(2);
    EXPECT_EQ(live.counts().hashed_at_stop, 100U);  // [0, 100), page 10 among them
    EXPECT_EQ(live.counts().holes, kPages / 2);
    EXPECT_EQ(final_pages.count(), 100 + kPages / 2);
    const DigestTable t = live.finish(2);
    EXPECT_EQ(live.counts().hashed_after, kPages / 2 - 100);
    EXPECT_EQ(file_holes(fd, kPages)->count(), kPages / 2);  // not read, so not allocated
    EXPECT_EQ(t.root(h), DigestTable::compute(h, std::span(map, kPages * kPage), kPage, 1).root(h));
  }
  ::munmap(map, kPages * kPage);
  // compute() above read the holes; a fresh file shows file_holes itself.
  const int fresh = ::memfd_create("ram2", 0);
  ASSERT_EQ(::ftruncate(fresh, kPages * kPage), 0);
  ASSERT_EQ(::pwrite(fresh, data.data(), kPage, 7 * kPage), static_cast<ssize_t>(kPage));
  Result<PageBitmap> holes = file_holes(fresh, kPages);
  ASSERT_TRUE(holes.is_ok()) << holes.status().message();
  EXPECT_EQ(holes->count(), kPages - 1);
  EXPECT_FALSE(holes->test(7));
  ::close(fresh);
  ::close(fd);
}

TEST(LiveDigestTable, PagesNotReachedBeforeTheFinishAreHashedThen) {
  const PageDigester h(random_digest_key());
  Memory m;
  // Waits for idle CPU that this test keeps busy: reaches little or nothing.
  std::optional<BusyCores> busy(std::in_place);
  LiveDigestTable live(h, m.span(), listed(m.written), "", {.when_idle = true, .step_pages = 256});
  m.write(4000, 3);
  const DigestTable t = live.finish(2);
  busy.reset();
  EXPECT_EQ(t.root(h), DigestTable::compute(h, m.span(), kPage, 1).root(h));
  EXPECT_GE(live.counts().hashed_ahead + live.counts().hashed_at_stop, kPages);  // every page once at least
}

// A CPU-bound pass leaves no idle time: with a busy share the steps still
// hash ahead (a little after each 100 ms gauge), without one they wait.
TEST(LiveDigestTable, ABusyShareHashesAheadWhileEveryCoreIsBusy) {
  const PageDigester h(random_digest_key());
  for (const double share : {0.0, 0.1}) {
    Memory m;
    std::optional<BusyCores> busy(std::in_place);
    LiveDigestTable live(h, m.span(), listed(m.written), "",
                         {.when_idle = true, .busy_core_share = share, .step_pages = 256});
    std::this_thread::sleep_for(std::chrono::milliseconds(450));
    m.write(3, 8);
    const DigestTable t = live.finish(2);
    busy.reset();
    EXPECT_EQ(t.root(h), DigestTable::compute(h, m.span(), kPage, 1).root(h)) << share;
    if (share > 0)
      EXPECT_GT(live.counts().hashed_ahead, 0U);
    else
      EXPECT_EQ(live.counts().hashed_ahead, 0U);
  }
}

TEST(LiveDigestTable, ATrackerThatFailsAtTheFinishMeansEveryPageIsHashedAgain) {
  const PageDigester h(random_digest_key());
  Memory m;
  LiveDigestTable live(h, m.span(), listed(m.written, true), "", {.when_idle = false, .step_pages = 256});
  wait_reached(live);
  m.write(1, 1);
  const DigestTable t = live.finish(2);
  EXPECT_EQ(t.root(h), DigestTable::compute(h, m.span(), kPage, 1).root(h));
  EXPECT_EQ(live.counts().hashed_at_stop, kPages);
  EXPECT_FALSE(live.counts().tracked);
  EXPECT_EQ(live.counts().not_tracked_because, "the write tracker failed at the stop: scan failed");
}

}  // namespace
}  // namespace bnf
