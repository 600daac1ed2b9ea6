// How much of the wall time one thread of a process spends waiting for a CPU
// (runnable, not running: /proc/PID/task/TID/schedstat). A thread that waits
// is held back by the CPUs, not by its I/O: a migration thread that does would
// go faster if the VM's vCPUs gave their cores back.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bnf {

class CpuWait {
 public:
  // The thread of `pid` whose name (comm) is `name`; none if there is none.
  static std::optional<CpuWait> of_thread(int pid, std::string_view name);
  // Share of the wall time since this object was made (0..1) the thread spent
  // waiting for a CPU; nullopt once the thread is gone.
  [[nodiscard]] std::optional<double> share() const;

 private:
  CpuWait(std::string schedstat, uint64_t wait_ns);
  std::string schedstat_;
  uint64_t wait0_ns_;
  std::chrono::steady_clock::time_point t0_;
};

// Reads the "run_ns wait_ns slices" line of a schedstat file.
std::optional<uint64_t> schedstat_wait_ns(const std::string& path);

}  // namespace bnf
