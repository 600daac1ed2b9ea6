// Faults a read-only shared mapping in ahead of a pass over it (a stopped VM's
// re-hash, in its downtime), on a thread of its own, 64 MiB per call
// (MADV_POPULATE_READ); stops between calls when stopped or destroyed. Not at
// idle priority: the call holds the process's mmap lock, and a SCHED_IDLE
// thread preempted while holding it stalled every mapping and thread start of
// the daemon (measured: e2e trips 3-5x slower). `when_idle` instead takes a
// step only after 100 ms in which the machine had half a core idle on
// average (/proc/stat): a migration held back by its link leaves CPU over,
// one held back by CPU would only be slowed (measured: a CPU-bound first pass
// 3-5% longer; gauged every 10 ms, its short idle gaps let steps through).
// `file` limits it to the allocated ranges of the file the region maps from
// offset 0 (reading a tmpfs hole allocates a page: a sparse VM's RAM file
// would fill up), and `again_after` walks the steps that had holes again after
// that long, then twice as long each time up to a minute, until none has (a
// running guest allocates as it goes, mostly early on).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <thread>

namespace bnf {

struct PrefaultOptions {
  bool when_idle = false;
  int file = -1;                             // fault in only this file's allocated ranges
  std::chrono::milliseconds again_after{0};  // then walk the steps with holes again; 0: once
  size_t step = 64U << 20;                   // the mmap lock is held for one step
};

class Prefault {
 public:
  explicit Prefault(std::span<const std::byte> region, PrefaultOptions opt = {});
  ~Prefault();
  Prefault(const Prefault&) = delete;
  Prefault& operator=(const Prefault&) = delete;
  // No further steps; returns once the one under way is done.
  void stop();
  // Returns once the whole region is faulted in (or a step failed).
  void wait();
  // Bytes faulted in so far (a range walked again counts again).
  [[nodiscard]] size_t done() const { return done_; }

 private:
  std::mutex mu_;
  std::condition_variable wake_;  // stop() interrupts the wait between idle gauges at once
  bool stop_ = false;
  std::atomic<size_t> done_{0};
  std::thread thread_;

  void run(std::span<const std::byte> region, const PrefaultOptions& opt);
  bool pause(std::chrono::milliseconds d);  // false once stopped
  // Faults in one step; false if it had holes (left for the next walk).
  bool fault_in(std::span<const std::byte> region, size_t off, size_t n, int file);
};

// The machine's idle CPU, in cores, between two calls (/proc/stat).
class IdleCores {
 public:
  IdleCores() { (void)sample(); }
  double sample();

 private:
  uint64_t idle_ = 0;
  uint64_t total_ = 0;
};

}  // namespace bnf
