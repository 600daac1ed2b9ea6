#include "write_tracker/uffd_write_tracker.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "bitmap/file_holes.hpp"
#include "common/page.hpp"
#include "write_tracker/remote_syscall.hpp"

// Debian 12's kernel headers (6.1) predate these (Linux 6.7 ABI).
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
struct page_region {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};
struct pm_scan_arg {
  uint64_t size;
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;
  uint64_t vec;
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_PRESENT (1 << 3)
#endif
#ifndef PM_SCAN_WP_MATCHING
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif

namespace bnf {

namespace {

constexpr size_t kRegionsPerScan = 4096;
constexpr uint64_t kMergeGap = 512 * kPageSize;  // 2 MiB
constexpr size_t kMaxRuns = 256;                 // each becomes a VMA of QEMU's

Status uffd_ioctl(int uffd, unsigned long req, void* arg, const char* what) {
  if (::ioctl(uffd, req, arg) == 0) return Status::ok();
  const int err = errno;
  if (req == UFFDIO_API && err == EINVAL)
    return {Errc::not_found, "this kernel has no asynchronous userfaultfd write-protect (Linux 6.7 or later)"};
  return errno_status(what, err);
}

// Calls `fn(start, end)` for each run of pages in [from, to) whose categories,
// flipped by `inverted`, all have `mask` set (PAGEMAP_SCAN).
// `flags`: PM_SCAN_WP_MATCHING also write-protects the pages it reports.
template <typename Fn>
Status scan(int pagemap, uint64_t from, uint64_t to, uint64_t inverted, uint64_t mask, Fn fn, uint64_t flags = 0) {
  std::vector<page_region> regions(kRegionsPerScan);
  while (from < to) {
    pm_scan_arg a{};
    a.size = sizeof a;
    a.flags = flags;
    a.start = from;
    a.end = to;
    a.vec = reinterpret_cast<uint64_t>(regions.data());
    a.vec_len = regions.size();
    a.category_inverted = inverted;
    a.category_mask = mask;
    a.return_mask = mask;
    const long n = ::ioctl(pagemap, PAGEMAP_SCAN, &a);
    if (n < 0 && errno == ENOTTY) return {Errc::not_found, "this kernel has no PAGEMAP_SCAN (Linux 6.7 or later)"};
    if (n < 0) return errno_status("scan QEMU's page tables (PAGEMAP_SCAN)", errno);
    for (long i = 0; i < n; ++i) fn(regions[i].start, regions[i].end);
    if (a.walk_end <= from) return {Errc::internal, "PAGEMAP_SCAN made no progress"};
    from = a.walk_end;
  }
  return Status::ok();
}

// The parts of `mappings` the process has in its page tables or that are
// holes in the file, as a few long runs: gaps under 2 MiB are bridged, at most
// kMaxRuns (the longest) kept. Only those are tracked: registering a range
// turns off the kernel's fault-around there, so the pass of a QEMU whose page
// tables are still empty (a VM that just arrived) would take one fault per
// page instead of per 16 (measured 230 against 60 ms per GiB read). A hole has
// no page to map around (each read of one faults anyway) and reads as zeros:
// registered, a hole QEMU's pass reads is not named (the guest memory a VM
// never touched, e.g. a 32-bit guest's RAM above 4 GiB). Pages outside count
// as changed.
Result<std::vector<UffdWriteTracker::Range>> tracked_runs(int pagemap,
                                                          const std::vector<UffdWriteTracker::Range>& mappings,
                                                          const PageBitmap& holes) {
  std::vector<UffdWriteTracker::Range> runs;
  for (const auto& m : mappings) {
    std::vector<std::pair<uint64_t, uint64_t>> parts;  // addresses, in order once sorted
    BNF_TRY(
        scan(pagemap, m.start, m.end, 0, PAGE_IS_PRESENT, [&](uint64_t s, uint64_t e) { parts.emplace_back(s, e); }));
    const uint64_t pages = (m.end - m.start) / kPageSize;
    for (uint64_t p = holes.find_next_set(m.file_page); p < std::min(holes.size(), m.file_page + pages);) {
      uint64_t q = holes.find_next_clear(p);
      q = std::min({q, holes.size(), m.file_page + pages});
      parts.emplace_back(m.start + (p - m.file_page) * kPageSize, m.start + (q - m.file_page) * kPageSize);
      p = holes.find_next_set(q);
    }
    std::sort(parts.begin(), parts.end());
    const size_t first = runs.size();
    for (const auto& [s, e] : parts) {
      if (runs.size() > first && s <= runs.back().end + kMergeGap) {
        runs.back().end = std::max(runs.back().end, e);
        continue;
      }
      runs.push_back({s, e, m.file_page + (s - m.start) / kPageSize});
    }
  }
  if (runs.size() > kMaxRuns) {
    std::sort(runs.begin(), runs.end(), [](const auto& a, const auto& b) { return a.end - a.start > b.end - b.start; });
    runs.resize(kMaxRuns);
  }
  return runs;
}

// A userfaultfd of process `pid`'s address space, held here.
Result<UniqueFd> userfaultfd_of(int pid) {
  BNF_ASSIGN_OR_RETURN(RemoteSyscalls in_qemu, RemoteSyscalls::attach(pid));
  BNF_ASSIGN_OR_RETURN(long fd,
                       in_qemu.call(SYS_userfaultfd, {O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY, 0, 0, 0, 0, 0}));
  if (fd < 0) return errno_status(fmt::format("userfaultfd in process {}", pid), static_cast<int>(-fd));
  Result<UniqueFd> ours = in_qemu.copy_fd(static_cast<int>(fd));
  (void)in_qemu.call(SYS_close, {fd, 0, 0, 0, 0, 0});  // ours keeps it alive
  return ours;
}

}  // namespace

Result<std::vector<UffdWriteTracker::Range>> shared_writable_mappings(int pid, int file_fd) {
  struct stat st {};
  if (::fstat(file_fd, &st) != 0) return errno_status("stat the RAM file", errno);
  std::ifstream maps(fmt::format("/proc/{}/maps", pid));
  if (!maps) return Status(Errc::not_found, fmt::format("no process {}", pid));
  std::vector<UffdWriteTracker::Range> out;
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long lo = 0;
    unsigned long hi = 0;
    unsigned long off = 0;
    unsigned dev_major = 0;
    unsigned dev_minor = 0;
    unsigned long ino = 0;
    char perms[5] = {};
    // NOLINTNEXTLINE(cert-err34-c): the kernel writes this line
    if (std::sscanf(line.c_str(), "%lx-%lx %4s %lx %x:%x %lu", &lo, &hi, perms, &off, &dev_major, &dev_minor, &ino) !=
        7)
      continue;
    if (ino != st.st_ino || makedev(dev_major, dev_minor) != st.st_dev) continue;
    if (perms[1] == 'w' && perms[3] == 's') out.push_back({lo, hi, off / kPageSize});
  }
  if (out.empty())
    return Status(Errc::not_found, fmt::format("process {} has no shared writable mapping of the RAM file", pid));
  return out;
}

Result<std::unique_ptr<UffdWriteTracker>> UffdWriteTracker::start(int pid, int file_fd, uint64_t pages,
                                                                  Coverage coverage) {
  BNF_ASSIGN_OR_RETURN(std::vector<Range> mappings, shared_writable_mappings(pid, file_fd));
  UniqueFd pagemap(::open(fmt::format("/proc/{}/pagemap", pid).c_str(), O_RDONLY | O_CLOEXEC));
  if (!pagemap.valid()) return errno_status(fmt::format("open /proc/{}/pagemap", pid), errno);
  std::vector<Range> ranges = mappings;
  if (coverage == Coverage::touched) {
    BNF_ASSIGN_OR_RETURN(PageBitmap holes, file_holes(file_fd, pages));
    BNF_ASSIGN_OR_RETURN(ranges, tracked_runs(pagemap.get(), mappings, holes));
  }
  BNF_ASSIGN_OR_RETURN(UniqueFd uffd, userfaultfd_of(pid));
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
  BNF_TRY(uffd_ioctl(uffd.get(), UFFDIO_API, &api, "userfaultfd features"));
  for (const Range& r : ranges) {
    uffdio_register reg{};
    reg.range = {r.start, r.end - r.start};
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    BNF_TRY(uffd_ioctl(uffd.get(), UFFDIO_REGISTER, &reg, "register QEMU's RAM mapping for write-protect"));
    uffdio_writeprotect wp{};
    wp.range = {r.start, r.end - r.start};
    wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
    BNF_TRY(uffd_ioctl(uffd.get(), UFFDIO_WRITEPROTECT, &wp, "write-protect QEMU's RAM mapping"));
  }
  return std::unique_ptr<UffdWriteTracker>(
      new UffdWriteTracker(std::move(uffd), std::move(pagemap), std::move(ranges), pages));
}

UffdWriteTracker::UffdWriteTracker(UniqueFd uffd, UniqueFd pagemap, std::vector<Range> ranges, uint64_t pages)
    : uffd_(std::move(uffd)), pagemap_(std::move(pagemap)), ranges_(std::move(ranges)), pages_(pages) {}

Result<PageBitmap> UffdWriteTracker::changed_since_start() {
  PageBitmap changed(pages_);
  changed.set_all();
  for (const Range& r : ranges_) BNF_TRY(clear_unchanged(r, changed));
  return changed;
}

Result<PageBitmap> UffdWriteTracker::take_changed() {
  PageBitmap changed(pages_);
  changed.set_all();
  PageBitmap tracked(pages_);
  for (const Range& r : ranges_) {
    const uint64_t first = r.file_page;
    const uint64_t last = std::min(pages_, r.file_page + (r.end - r.start) / kPageSize);
    if (first < last) tracked.set_range(first, last - first);
  }
  BNF_TRY(changed.subtract(tracked));  // outside every range: changed, always
  for (const Range& r : ranges_) {
    BNF_TRY(scan(
        pagemap_.get(), r.start, r.end, 0, PAGE_IS_WRITTEN,
        [&](uint64_t s, uint64_t e) {
          const uint64_t first = r.file_page + (s - r.start) / kPageSize;
          const uint64_t last = std::min(pages_, r.file_page + (e - r.start) / kPageSize);
          if (first < last) changed.set_range(first, last - first);
        },
        PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC));
  }
  return changed;
}

// Clears the pages of `r` that are mapped and still write-protected: nothing
// wrote them since start(). A page the process no longer maps may have been
// discarded (its bytes are then zero, without a write): it stays set.
Status UffdWriteTracker::clear_unchanged(const Range& r, PageBitmap& changed) const {
  return scan(pagemap_.get(), r.start, r.end, PAGE_IS_WRITTEN, PAGE_IS_WRITTEN | PAGE_IS_PRESENT,
              [&](uint64_t s, uint64_t e) {  // present and not written
                const uint64_t first = r.file_page + (s - r.start) / kPageSize;
                const uint64_t last = std::min(pages_, r.file_page + (e - r.start) / kPageSize);
                if (first < last) changed.clear_range(first, last - first);
              });
}

}  // namespace bnf
