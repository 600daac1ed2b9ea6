#include "numa_placement.hpp"

#include <numa.h>

#include <cerrno>

namespace bnf {

NumaInfo numa_info() {
  NumaInfo i;
  i.available = numa_available() >= 0;
  if (i.available) i.nodes = numa_num_configured_nodes();
  return i;
}

Status run_on_node(int node) {
  if (node < 0) return Status::ok();
  NumaInfo i = numa_info();
  if (!i.available) return {Errc::invalid_argument, "NUMA is not available on this host"};
  if (node >= i.nodes) return {Errc::invalid_argument, "NUMA node " + std::to_string(node) + " does not exist"};
  if (numa_run_on_node(node) != 0) return errno_status("numa_run_on_node", errno);
  return Status::ok();
}

Status prefer_node(int node) {
  if (node < 0) return Status::ok();
  BNF_TRY(run_on_node(node));
  numa_set_preferred(node);
  return Status::ok();
}

}  // namespace bnf
