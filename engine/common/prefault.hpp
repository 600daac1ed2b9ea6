// Faults a read-only shared mapping in ahead of a pass over it, with idle CPU
// time only: a SCHED_IDLE thread maps 64 MiB per call (MADV_POPULATE_READ).
// On a host with CPU to spare the later pass (a stopped VM's re-hash, in its
// downtime) does not fault page by page; on a busy one it takes nothing from
// the migration. Stops between calls when destroyed.
#pragma once

#include <atomic>
#include <cstddef>
#include <span>
#include <thread>

namespace bnf {

class IdlePrefault {
 public:
  explicit IdlePrefault(std::span<const std::byte> region);
  ~IdlePrefault();
  IdlePrefault(const IdlePrefault&) = delete;
  IdlePrefault& operator=(const IdlePrefault&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace bnf
