#include "common/prefault.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/files.hpp"

namespace bnf {

Prefault::Prefault(std::span<const std::byte> region, PrefaultOptions opt) {
  if (region.empty()) return;
  thread_ = std::thread([this, region, opt] { run(region, opt); });
}

void Prefault::run(std::span<const std::byte> region, const PrefaultOptions& opt) {
  IdleCores idle;
  std::vector<size_t> todo;  // step offsets
  for (size_t off = 0; off < region.size(); off += opt.step) todo.push_back(off);
  std::chrono::milliseconds again = opt.again_after;
  while (!todo.empty()) {
    std::vector<size_t> holes;
    for (size_t i = 0; i < todo.size();) {
      // Idle on average: short gaps in a CPU-bound pass do not count.
      if (!pause(opt.when_idle ? std::chrono::milliseconds(100) : std::chrono::milliseconds(0))) return;
      if (opt.when_idle && idle.sample() < 0.5) continue;
      const size_t off = todo[i++];
      const size_t n = std::min(opt.step, region.size() - off);
      if (!fault_in(region, off, n, opt.file)) holes.push_back(off);
    }
    if (opt.again_after.count() == 0 || holes.empty() || !pause(again)) return;
    again = std::min(again * 2, std::chrono::milliseconds(std::chrono::minutes(1)));
    todo = std::move(holes);
  }
}

bool Prefault::pause(std::chrono::milliseconds d) {
  std::unique_lock lk(mu_);
  if (d.count() > 0) wake_.wait_for(lk, d, [this] { return stop_; });
  return !stop_;
}

bool Prefault::fault_in(std::span<const std::byte> region, size_t off, size_t n, int file) {
  auto populate = [&](size_t from, size_t len) {
    auto* at = const_cast<std::byte*>(region.data() + from);
    if (::madvise(at, len, MADV_POPULATE_READ) == 0) done_ += len;  // old kernel: the pass faults
  };
  if (file < 0) {
    populate(off, n);
    return true;
  }
  bool whole = true;
  size_t at = off;  // where the data found so far ends
  const Status st = for_each_data_run(file, off, off + n, [&](uint64_t start, uint64_t end) {
    if (start > at) whole = false;
    populate(start, end - start);
    at = end;
  });
  return st.is_ok() && whole && at >= off + n;  // else a hole, maybe to the step's end
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
