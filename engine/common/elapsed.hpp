// Seconds on the monotonic clock, as reports and phase timings give them.
#pragma once

#include <chrono>

namespace bnf {

[[nodiscard]] inline double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace bnf
