#include "common/prefault.hpp"

#include <sched.h>
#include <sys/mman.h>

#include <algorithm>

namespace bnf {

IdlePrefault::IdlePrefault(std::span<const std::byte> region) {
  if (region.empty()) return;
  thread_ = std::thread([this, region] {
    sched_param none{};
    (void)::sched_setscheduler(0, SCHED_IDLE, &none);  // this thread only; best effort
    constexpr size_t kStep = 64U << 20;
    for (size_t off = 0; off < region.size() && !stop_; off += kStep) {
      auto* at = const_cast<std::byte*>(region.data() + off);
      if (::madvise(at, std::min(kStep, region.size() - off), MADV_POPULATE_READ) != 0) return;  // old kernel
    }
  });
}

IdlePrefault::~IdlePrefault() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

}  // namespace bnf
