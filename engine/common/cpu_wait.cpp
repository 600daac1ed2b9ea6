#include "common/cpu_wait.hpp"

#include <filesystem>
#include <fstream>

namespace bnf {

std::optional<uint64_t> schedstat_wait_ns(const std::string& path) {
  std::ifstream in(path);
  uint64_t run_ns = 0;
  uint64_t wait_ns = 0;
  if (!(in >> run_ns >> wait_ns)) return std::nullopt;
  return wait_ns;
}

std::optional<CpuWait> CpuWait::of_thread(int pid, std::string_view name) {
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream comm(task.path() / "comm");
    std::string got;
    if (!std::getline(comm, got) || got != name) continue;
    const std::string stat = (task.path() / "schedstat").string();
    if (auto wait = schedstat_wait_ns(stat)) return CpuWait(stat, *wait);
  }
  return std::nullopt;
}

CpuWait::CpuWait(std::string schedstat, uint64_t wait_ns)
    : schedstat_(std::move(schedstat)), wait0_ns_(wait_ns), t0_(std::chrono::steady_clock::now()) {}

std::optional<double> CpuWait::share() const {
  const auto wait = schedstat_wait_ns(schedstat_);
  if (!wait) return std::nullopt;
  const auto wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0_);
  if (wall_ns.count() <= 0) return 0.0;
  return static_cast<double>(*wait - wait0_ns_) / static_cast<double>(wall_ns.count());
}

}  // namespace bnf
