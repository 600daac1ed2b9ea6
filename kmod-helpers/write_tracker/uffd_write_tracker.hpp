// Tracks writes to a VM's RAM file through another process's mappings of it
// (QEMU's): asynchronous userfaultfd write-protect (Linux 6.7+) on those
// mappings, read back with PAGEMAP_SCAN. The kernel lifts a page's protection
// on its first write and remembers that it did; nothing in QEMU runs for it.
// The userfaultfd must belong to QEMU's address space, so it is created by a
// system call run in QEMU's main thread (RemoteSyscalls) and then used from here.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "bitmap/write_tracker.hpp"
#include "common/unique_fd.hpp"

namespace bnf {

class UffdWriteTracker final : public WriteTracker {
 public:
  // What is registered: the parts QEMU has mapped in (and the file's holes),
  // for a trip whose QEMU reads all RAM (registering turns off fault-around
  // there); or every page, for rounds of take_changed (shared mode), where a
  // page outside would count as changed in every round.
  enum class Coverage { touched, whole };
  // Starts tracking writes to the first `pages` pages of the file open as
  // `file_fd` through every shared writable mapping process `pid` has of it.
  static Result<std::unique_ptr<UffdWriteTracker>> start(int pid, int file_fd, uint64_t pages,
                                                         Coverage coverage = Coverage::touched);
  // Written since start(), or no longer mapped in the process (a discarded
  // page changes without a write), or not mapped there at all.
  [[nodiscard]] Result<PageBitmap> changed_since_start() override;
  // The written pages, protected again in the same PAGEMAP_SCAN (so a write
  // after the scan passed a page is reported next time), and the pages
  // outside the tracked ranges.
  [[nodiscard]] Result<PageBitmap> take_changed() override;
  // Closing the userfaultfd ends the protection; the process goes on untouched.
  ~UffdWriteTracker() override = default;

  struct Range {
    uint64_t start = 0;  // address in the process
    uint64_t end = 0;
    uint64_t file_page = 0;  // page of the file mapped at `start`
  };

 private:
  UffdWriteTracker(UniqueFd uffd, UniqueFd pagemap, std::vector<Range> ranges, uint64_t pages);
  Status clear_unchanged(const Range& r, PageBitmap& changed) const;

  UniqueFd uffd_;
  UniqueFd pagemap_;
  std::vector<Range> ranges_;
  uint64_t pages_;
};

// The shared writable mappings process `pid` has of the file open as `file_fd`
// (/proc/PID/maps).
Result<std::vector<UffdWriteTracker::Range>> shared_writable_mappings(int pid, int file_fd);

}  // namespace bnf
