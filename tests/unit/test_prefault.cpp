// Prefault: a pass over the mapping afterwards takes no page faults; the idle
// gauge stays within the machine's cores.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "common/files.hpp"
#include "common/prefault.hpp"
#include "test_util.hpp"

namespace bnf {
namespace {

long minor_faults() {
  rusage u{};
  ::getrusage(RUSAGE_THREAD, &u);
  return u.ru_minflt;
}

// Not instrumented: under ASan each read would also fault in its shadow memory.
__attribute__((no_sanitize("address"))) uint64_t read_every_page(const std::byte* p, size_t bytes) {
  uint64_t sum = 0;
  for (size_t off = 0; off < bytes; off += 4096) sum += static_cast<uint8_t>(p[off]);
  return sum;
}

TEST(Prefault, APassAfterItTakesNoPageFaults) {
  constexpr size_t kBytes = 96U << 20;  // one full step and a short one
  test::TempDir dir;
  auto fd = open_file(dir.path() + "/ram", O_RDWR | O_CREAT);
  ASSERT_TRUE(fd.is_ok());
  ASSERT_EQ(::ftruncate(fd->get(), kBytes), 0);
  std::vector<char> page(4096, 'x');
  for (size_t off = 0; off < kBytes; off += 4096) ASSERT_EQ(::pwrite(fd->get(), page.data(), 4096, off), 4096);
  auto* p = static_cast<const std::byte*>(::mmap(nullptr, kBytes, PROT_READ, MAP_SHARED, fd->get(), 0));
  ASSERT_NE(p, MAP_FAILED);
  {
    Prefault pf(std::span(p, kBytes));
    pf.wait();
    ASSERT_EQ(pf.done(), kBytes);
  }
  const long before = minor_faults();
  const uint64_t sum = read_every_page(p, kBytes);
  EXPECT_LT(minor_faults() - before, 16);
  EXPECT_EQ(sum, kBytes / 4096 * 'x');
  ::munmap(const_cast<std::byte*>(p), kBytes);
}

uint64_t allocated_bytes(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

bool done_reaches(const Prefault& pf, size_t bytes) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (pf.done() < bytes && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return pf.done() >= bytes;
}

// A sparse RAM file stays sparse (reading a tmpfs hole would allocate it); what
// the guest writes later is faulted in by the next walk.
TEST(Prefault, OnlyTheFilesAllocatedRangesAndLaterOnesOnTheNextWalk) {
  constexpr size_t kBytes = 64U << 20;
  test::TempDir dir;  // on /dev/shm where there is one
  auto fd = open_file(dir.path() + "/ram", O_RDWR | O_CREAT);
  ASSERT_TRUE(fd.is_ok());
  ASSERT_EQ(::ftruncate(fd->get(), kBytes), 0);
  std::vector<char> mib(1U << 20, 'x');
  auto write_mib = [&](size_t at) { ASSERT_EQ(::pwrite(fd->get(), mib.data(), mib.size(), at), mib.size()); };
  write_mib(0);
  write_mib(20U << 20);
  auto* p = static_cast<const std::byte*>(::mmap(nullptr, kBytes, PROT_READ, MAP_SHARED, fd->get(), 0));
  ASSERT_NE(p, MAP_FAILED);
  {
    Prefault pf(std::span(p, kBytes),
                {.file = fd->get(), .again_after = std::chrono::milliseconds(50), .step = 16U << 20});
    ASSERT_TRUE(done_reaches(pf, 2U << 20));
    EXPECT_EQ(allocated_bytes(fd->get()), 2U << 20);
    write_mib(40U << 20);                     // the guest allocates more
    ASSERT_TRUE(done_reaches(pf, 5U << 20));  // the second walk: 3 MiB more
  }
  EXPECT_EQ(allocated_bytes(fd->get()), 3U << 20);
  const long before = minor_faults();
  const uint64_t sum = read_every_page(p + (40U << 20), 1U << 20);
  EXPECT_LT(minor_faults() - before, 4);
  EXPECT_EQ(sum, 256U * 'x');
  ::munmap(const_cast<std::byte*>(p), kBytes);
}

// stop() comes at a VM's stop, when the re-hash must start: it may not wait
// out the pause between idle gauges (it did: ~50 ms in every direct trip).
TEST(Prefault, StopReturnsAtOnceWhileWaitingForIdleCpu) {
  std::vector<std::byte> region(1U << 20);
  Prefault pf(region, {.when_idle = true});
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto t0 = std::chrono::steady_clock::now();
  pf.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(50));  // the pause is 100 ms
}

TEST(Prefault, IdleCoresStayWithinTheMachine) {
  IdleCores idle;
  ::usleep(20000);
  const double cores = idle.sample();
  EXPECT_GE(cores, 0.0);
  EXPECT_LE(cores, static_cast<double>(::sysconf(_SC_NPROCESSORS_ONLN)) + 0.01);
}

}  // namespace
}  // namespace bnf
