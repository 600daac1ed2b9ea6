#include "common/prefault.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

namespace bnf {

Prefault::Prefault(std::span<const std::byte> region, PrefaultOptions opt) {
  if (region.empty()) return;
  thread_ = std::thread([this, region, opt] {
    constexpr size_t kStep = 64U << 20;
    IdleCores idle;
    for (size_t off = 0; off < region.size();) {
      {
        std::unique_lock lk(mu_);
        // Idle on average: short gaps in a CPU-bound pass do not count.
        if (opt.when_idle) wake_.wait_for(lk, std::chrono::milliseconds(100), [this] { return stop_; });
        if (stop_) return;
      }
      if (opt.when_idle && idle.sample() < 0.5) continue;
      auto* at = const_cast<std::byte*>(region.data() + off);
      const size_t n = std::min(kStep, region.size() - off);
      if (::madvise(at, n, MADV_POPULATE_READ) != 0) return;  // old kernel: the pass faults
      off += n;
      done_ = off;
    }
  });
}

void Prefault::stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  wait();
}

void Prefault::wait() {
  if (thread_.joinable()) thread_.join();
}

Prefault::~Prefault() { stop(); }

double IdleCores::sample() {
  std::ifstream in("/proc/stat");
  std::string line;
  std::getline(in, line);  // "cpu  user nice system idle iowait irq softirq steal ..."
  std::istringstream fields(line);
  std::string label;
  fields >> label;
  uint64_t v = 0;
  uint64_t total = 0;
  uint64_t idle = 0;
  for (int i = 0; i < 8 && fields >> v; ++i) {  // guest time is counted in user already
    total += v;
    if (i == 3 || i == 4) idle += v;  // idle, iowait
  }
  const uint64_t d_total = total - total_;
  const uint64_t d_idle = idle - idle_;
  total_ = total;
  idle_ = idle;
  if (d_total == 0) return 0;
  const long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
  return static_cast<double>(d_idle) / static_cast<double>(d_total) * static_cast<double>(std::max(1L, cores));
}

}  // namespace bnf
