// UffdWriteTracker against a real process: a child that maps a tmpfs file and
// writes it on command (blocked in read() between commands, so attaching also
// restarts an interrupted system call), or writes it nonstop.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "digest/live_digest_table.hpp"
#include "write_tracker/uffd_write_tracker.hpp"

namespace bnf {
namespace {

constexpr uint64_t kPages = 512;
constexpr uint64_t kPage = 4096;

enum Op : uint64_t { kWrite = 1, kPunch = 2, kTouch = 3, kWriteNonstop = 4, kReadFrom = 5 };
uint64_t command(Op op, uint64_t arg = 0) { return (static_cast<uint64_t>(op) << 56) | arg; }

// Only system calls and memory writes: it runs in a fork of a threaded process.
[[noreturn]] void child_main(int cmd, int ack, int file, std::byte* mem) {
  uint64_t c = 0;
  while (::read(cmd, &c, sizeof c) == sizeof c) {
    const uint64_t arg = c & ((1ULL << 56) - 1);
    switch (static_cast<Op>(c >> 56)) {
      case kWrite:
        mem[arg * kPage + 100] = static_cast<std::byte>(static_cast<uint8_t>(mem[arg * kPage + 100]) + 1);
        break;
      case kPunch:
        (void)::fallocate(file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(arg * kPage), kPage);
        break;
      case kTouch:
        for (uint64_t p = 0; p < arg; ++p) mem[p * kPage] = std::byte{1};
        break;
      case kReadFrom: {
        uint8_t sum = 0;
        for (uint64_t p = arg; p < kPages; ++p)
          sum += static_cast<uint8_t>(*static_cast<volatile std::byte*>(mem + p * kPage));
        (void)sum;
        break;
      }
      case kWriteNonstop:
        (void)::write(ack, &c, sizeof c);
        for (uint64_t x = 88172645463325252ULL;;) {  // xorshift: pages in no order
          x ^= x << 13, x ^= x >> 7, x ^= x << 17;
          mem[(x % kPages) * kPage + (x >> 40) % kPage] = static_cast<std::byte>(x);
        }
    }
    (void)::write(ack, &c, sizeof c);
  }
  ::_exit(0);
}

class Child {
 public:
  explicit Child(int file) {
    int c[2];
    int a[2];
    EXPECT_EQ(::pipe(c), 0);
    EXPECT_EQ(::pipe(a), 0);
    auto* mem = static_cast<std::byte*>(::mmap(nullptr, kPages * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, file, 0));
    EXPECT_NE(mem, MAP_FAILED);
    pid_ = ::fork();
    if (pid_ == 0) child_main(c[0], a[1], file, mem);
    ::munmap(mem, kPages * kPage);
    ::close(c[0]);
    ::close(a[1]);
    cmd_ = c[1];
    ack_ = a[0];
  }
  ~Child() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    ::close(cmd_);
    ::close(ack_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // Sends a command and waits until the child carried it out.
  void run(uint64_t c) const {
    ASSERT_EQ(::write(cmd_, &c, sizeof c), static_cast<ssize_t>(sizeof c));
    uint64_t back = 0;
    ASSERT_EQ(::read(ack_, &back, sizeof back), static_cast<ssize_t>(sizeof back));
    ASSERT_EQ(back, c);
  }
  void stop() const {
    ::kill(pid_, SIGSTOP);
    int st = 0;
    ::waitpid(pid_, &st, WUNTRACED);
  }
  [[nodiscard]] int pid() const { return pid_; }

 private:
  int pid_ = -1;
  int cmd_ = -1;
  int ack_ = -1;
};

class UffdWriteTrackerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = ::memfd_create("bnf-tracker-test", MFD_CLOEXEC);
    ASSERT_GE(file_, 0);
    ASSERT_EQ(::ftruncate(file_, kPages * kPage), 0);
  }
  void TearDown() override { ::close(file_); }
  // Skips where the kernel cannot (before Linux 6.7) or tracing is not allowed.
  std::unique_ptr<UffdWriteTracker> start(const Child& child, uint64_t pages = kPages,
                                          UffdWriteTracker::Coverage coverage = UffdWriteTracker::Coverage::touched) {
    auto t = UffdWriteTracker::start(child.pid(), file_, pages, coverage);
    if (!t.is_ok() && (t.status().code() == Errc::denied || t.status().code() == Errc::not_found)) return nullptr;
    EXPECT_TRUE(t.is_ok()) << t.status().message();
    return t.is_ok() ? std::move(*t) : nullptr;
  }
  int file_ = -1;
};

#define START_OR_SKIP(var, ...)                                                      \
  auto var = start(__VA_ARGS__);                                                     \
  if (!(var)) GTEST_SKIP() << "no asynchronous uffd-wp here or tracing not allowed"; \
  static_assert(true)

TEST_F(UffdWriteTrackerTest, NamesThePagesWrittenSinceItStartedAndNoOthers) {
  Child child(file_);
  child.run(command(kTouch, kPages));
  START_OR_SKIP(tracker, child);
  for (uint64_t p : {3, 77, 200, 511}) child.run(command(kWrite, p));  // also: the child's read() went on
  auto changed = tracker->changed_since_start();
  ASSERT_TRUE(changed.is_ok()) << changed.status().message();
  EXPECT_EQ(changed->count(), 4U);
  for (uint64_t p : {3, 77, 200, 511}) EXPECT_TRUE(changed->test(p)) << p;
  child.run(command(kWrite, 3));  // written again: still named once, nothing else
  EXPECT_EQ(tracker->changed_since_start()->count(), 4U);
}

// Shared mode's rounds: each take names what was written since the last one.
TEST_F(UffdWriteTrackerTest, EachTakeNamesThePagesWrittenSinceTheLastTake) {
  Child child(file_);
  child.run(command(kTouch, kPages / 2));  // the rest: holes, tracked as well
  START_OR_SKIP(tracker, child, kPages, UffdWriteTracker::Coverage::whole);
  auto first = tracker->take_changed();
  ASSERT_TRUE(first.is_ok()) << first.status().message();
  EXPECT_EQ(first->count(), 0U);
  for (uint64_t p : {uint64_t{3}, uint64_t{77}, kPages / 2 + 5}) child.run(command(kWrite, p));
  auto second = tracker->take_changed();
  ASSERT_TRUE(second.is_ok());
  EXPECT_EQ(second->count(), 3U);
  for (uint64_t p : {uint64_t{3}, uint64_t{77}, kPages / 2 + 5}) EXPECT_TRUE(second->test(p)) << p;
  EXPECT_EQ(tracker->take_changed()->count(), 0U);  // protected again by the take
  child.run(command(kWrite, 77));
  auto third = tracker->take_changed();
  ASSERT_TRUE(third.is_ok());
  EXPECT_EQ(third->count(), 1U);
  EXPECT_TRUE(third->test(77));
}

// A page beyond the tracked ranges cannot be vouched for: every take names it.
TEST_F(UffdWriteTrackerTest, PagesOutsideTheTrackedRangesAreNamedByEveryTake) {
  Child child(file_);
  child.run(command(kTouch, kPages));
  START_OR_SKIP(tracker, child, kPages + 8, UffdWriteTracker::Coverage::whole);
  for (int round = 0; round < 2; ++round) {
    auto changed = tracker->take_changed();
    ASSERT_TRUE(changed.is_ok());
    EXPECT_EQ(changed->count(), 8U);
    EXPECT_EQ(changed->find_next_set(0), kPages);
  }
}

TEST_F(UffdWriteTrackerTest, ADiscardedPageIsNamedThoughNothingWroteIt) {
  Child child(file_);
  child.run(command(kTouch, kPages));
  START_OR_SKIP(tracker, child);
  child.run(command(kPunch, 9));
  auto changed = tracker->changed_since_start();
  ASSERT_TRUE(changed.is_ok());
  EXPECT_TRUE(changed->test(9));
  EXPECT_EQ(changed->count(), 1U);
}

TEST_F(UffdWriteTrackerTest, PagesTheProcessNeverMappedAreNamed) {
  Child child(file_);
  child.run(command(kTouch, kPages / 2));
  START_OR_SKIP(tracker, child);
  auto changed = tracker->changed_since_start();
  ASSERT_TRUE(changed.is_ok());
  EXPECT_EQ(changed->count(), kPages / 2);
  EXPECT_EQ(changed->find_next_set(0), kPages / 2);
}

// Holes in the file are tracked too: reading one (as QEMU's pass does the
// memory a guest never touched) is no write, writing one is.
TEST_F(UffdWriteTrackerTest, HolesReadAfterTheStartAreNotNamedButAHoleWrittenIs) {
  Child child(file_);
  child.run(command(kTouch, kPages / 2));  // the rest: holes
  START_OR_SKIP(tracker, child);
  child.run(command(kReadFrom, kPages / 2));
  child.run(command(kWrite, kPages / 2 + 5));
  auto changed = tracker->changed_since_start();
  ASSERT_TRUE(changed.is_ok());
  EXPECT_EQ(changed->count(), 1U);
  EXPECT_TRUE(changed->test(kPages / 2 + 5));
}

TEST_F(UffdWriteTrackerTest, AProcessThatDoesNotMapTheFileIsRefusedWithTheCause) {
  Child child(file_);
  const int other = ::memfd_create("bnf-other", MFD_CLOEXEC);
  ASSERT_EQ(::ftruncate(other, kPage), 0);
  auto t = UffdWriteTracker::start(child.pid(), other, 1);
  ::close(other);
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("no shared writable mapping of the RAM file"), std::string::npos)
      << t.status().message();
  child.run(command(kWrite, 1));  // untouched: never stopped
}

TEST_F(UffdWriteTrackerTest, NoSuchProcess) {
  auto t = UffdWriteTracker::start(0x3fffffff, file_, kPages);
  ASSERT_FALSE(t.is_ok());
  EXPECT_EQ(t.status().code(), Errc::not_found);
}

// The table made mostly while the child writes nonstop, finished once it is
// stopped, is the table of its memory then.
TEST_F(UffdWriteTrackerTest, ALiveTableFinishedAtTheStopIsTheStoppedMemorysTable) {
  Child child(file_);
  child.run(command(kTouch, kPages));
  START_OR_SKIP(tracker, child);  // attached while the child waits in read()
  child.run(command(kWriteNonstop));
  auto* mem = static_cast<const std::byte*>(::mmap(nullptr, kPages * kPage, PROT_READ, MAP_SHARED, file_, 0));
  ASSERT_NE(mem, MAP_FAILED);
  const std::span<const std::byte> ram(mem, kPages * kPage);
  const PageDigester h(random_digest_key());
  LiveDigestTable live(h, ram, std::move(tracker), "", {.when_idle = false, .step_pages = 64});
  while (live.pages_not_reached() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // more writes after the hashes
  child.stop();
  const DigestTable at_stop = live.finish(2);
  const DigestTable whole = DigestTable::compute(h, ram, kPage, 1);
  EXPECT_EQ(at_stop.root(h), whole.root(h));
  EXPECT_EQ(live.counts().hashed_ahead, kPages);
  EXPECT_TRUE(live.counts().tracked);
  EXPECT_GT(live.counts().hashed_at_stop, 0U);  // the writer reached pages after they were hashed
  ::munmap(const_cast<std::byte*>(mem), kPages * kPage);
}

// A trip that could not hash ahead (a CPU-bound pass): the downtime hashes
// only what the child wrote, and the rest, hashed after it, completes the
// stopped memory's table.
TEST_F(UffdWriteTrackerTest, WhatTheDowntimeLeavesCompletesTheStoppedMemorysTable) {
  Child child(file_);
  child.run(command(kTouch, kPages));
  START_OR_SKIP(tracker, child);
  for (uint64_t p : {3, 77, 200}) child.run(command(kWrite, p));
  auto* mem = static_cast<const std::byte*>(::mmap(nullptr, kPages * kPage, PROT_READ, MAP_SHARED, file_, 0));
  ASSERT_NE(mem, MAP_FAILED);
  const std::span<const std::byte> ram(mem, kPages * kPage);
  const PageDigester h(random_digest_key());
  // Hashes ahead only after 100 ms with idle CPU: not before the finish here.
  LiveDigestTable live(h, ram, std::move(tracker), "", {.when_idle = true});
  child.stop();
  const PageBitmap final_pages = live.finish_written(2);
  EXPECT_EQ(final_pages.count(), 3U);
  EXPECT_TRUE(final_pages.test(3) && final_pages.test(77) && final_pages.test(200));
  const DigestTable whole = DigestTable::compute(h, ram, kPage, 1);
  for (uint64_t p : {3, 77, 200}) EXPECT_EQ(live.table()[p], whole[p]) << p;
  EXPECT_EQ(live.finish(2).root(h), whole.root(h));
  EXPECT_EQ(live.counts().hashed_after, kPages - 3);
  ::munmap(const_cast<std::byte*>(mem), kPages * kPage);
}

// A tracker started in a running (not blocked) thread: the system call runs
// from the vDSO's instruction, and the child writes on afterwards.
TEST_F(UffdWriteTrackerTest, AttachesToAThreadRunningInUserSpace) {
  Child child(file_);
  child.run(command(kTouch, kPages));
  child.run(command(kWriteNonstop));
  START_OR_SKIP(tracker, child);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto changed = tracker->changed_since_start();
  ASSERT_TRUE(changed.is_ok());
  EXPECT_GT(changed->count(), 0U);  // it kept writing
}

}  // namespace
}  // namespace bnf
