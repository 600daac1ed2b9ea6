// NUMA placement of transfer threads and buffers (libnuma). On a host with one
// node (or without NUMA) every call is a cheap no-op that still succeeds.
#pragma once

#include <cstddef>
#include <string>

#include "common/status.hpp"

namespace bnf {

struct NumaInfo {
  bool available = false;
  int nodes = 1;
};

NumaInfo numa_info();
// Runs the calling thread on `node` (-1: leave as is).
Status run_on_node(int node);
// Prefers `node` for the calling thread's future allocations (-1: leave as is).
Status prefer_node(int node);

}  // namespace bnf
