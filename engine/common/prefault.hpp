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
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <thread>

namespace bnf {

struct PrefaultOptions {
  bool when_idle = false;
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
  // Bytes faulted in so far.
  [[nodiscard]] size_t done() const { return done_; }

 private:
  std::mutex mu_;
  std::condition_variable wake_;  // stop() interrupts the wait between idle gauges at once
  bool stop_ = false;
  std::atomic<size_t> done_{0};
  std::thread thread_;
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
