// A running VM's RAM file as this daemon sees it: mapped read-only for as long
// as the VM runs here and faulted in while the machine is idle, so that a
// departure's re-hash of the stopped VM takes no page faults in the downtime
// (1 GiB on two threads: 92 ms through a fresh mapping, 55 ms through a kept
// one; bnf-microbench --benchmark_filter=Tmpfs). Only the file's allocated
// ranges are faulted in (a read of a tmpfs hole would allocate it), and the
// ones the guest allocates later on walks 1, 2, 4 ... 60 s apart.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/prefault.hpp"
#include "common/status.hpp"
#include "common/unique_fd.hpp"

namespace bnf::qemu {

class WarmRam {
 public:
  static Result<std::unique_ptr<WarmRam>> open(const std::string& ram_file, uint64_t bytes);
  [[nodiscard]] std::span<const std::byte> bytes() const { return map_.bytes(); }
  [[nodiscard]] size_t faulted_in() const { return walked_ + (prefault_ ? prefault_->done() : 0); }
  // No walks while the VM departs: a step holds the daemon's mmap lock for
  // tens of ms, and the departure starts its re-hash threads at the stop
  // (their stacks are mappings). Returns once the step under way is done.
  void pause_walks();
  void resume_walks();  // the departure failed: the VM runs here on

 private:
  WarmRam(UniqueFd fd, Mapping map);
  size_t walked_ = 0;  // by walks paused since
  UniqueFd fd_;
  Mapping map_;
  std::unique_ptr<Prefault> prefault_;  // last: stops before the mapping goes
};

}  // namespace bnf::qemu
