// Faults a read-only shared mapping in ahead of a pass over it (a stopped VM's
// re-hash, in its downtime), on a thread of its own, 64 MiB per call
// (MADV_POPULATE_READ); stops between calls when destroyed. Not at idle
// priority: the call holds the process's mmap lock, and a SCHED_IDLE thread
// preempted while holding it stalled every mapping and thread start of the
// daemon (measured: e2e trips 3-5x slower).
#pragma once

#include <atomic>
#include <cstddef>
#include <span>
#include <thread>

namespace bnf {

class Prefault {
 public:
  explicit Prefault(std::span<const std::byte> region);
  ~Prefault();
  Prefault(const Prefault&) = delete;
  Prefault& operator=(const Prefault&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace bnf
