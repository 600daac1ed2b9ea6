#include "common/prefault.hpp"

#include <sys/mman.h>

#include <algorithm>

namespace bnf {

Prefault::Prefault(std::span<const std::byte> region) {
  if (region.empty()) return;
  thread_ = std::thread([this, region] {
    constexpr size_t kStep = 64U << 20;
    for (size_t off = 0; off < region.size() && !stop_; off += kStep) {
      auto* at = const_cast<std::byte*>(region.data() + off);
      if (::madvise(at, std::min(kStep, region.size() - off), MADV_POPULATE_READ) != 0) return;  // old kernel
    }
  });
}

Prefault::~Prefault() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

}  // namespace bnf
