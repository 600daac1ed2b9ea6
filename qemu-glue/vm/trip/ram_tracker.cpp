#include "vm/trip/ram_tracker.hpp"

#include <fcntl.h>

#include <array>
#include <string_view>

#include "common/files.hpp"
#include "common/page.hpp"
#include "write_tracker/uffd_write_tracker.hpp"

namespace bnf::qemu {

namespace {

// Devices that write guest memory other than through QEMU's mapping of the
// RAM file (another process's mapping, a DMA engine) or discard pages
// without a write: the tracker would not see those changes.
constexpr std::array<std::string_view, 6> kWritesBehindTheTracker{"vfio",       "vhost-user", "virtio-balloon",
                                                                  "virtio-mem", "ivshmem",    "vhost-vdpa"};

std::string device_obstacle(const VmDefinition& def) {
  for (const std::string& a : def.extra_args)
    for (std::string_view d : kWritesBehindTheTracker)
      if (a.find(d) != std::string::npos)
        return std::string("the VM has a ") + std::string(d) + " device, which writes guest memory behind the tracker";
  return "";
}

}  // namespace

RamTracker arm_ram_tracker(const VmDefinition& def, const std::string& ram_file, int qemu_pid) {
  RamTracker r;
  r.why_not = device_obstacle(def);
  if (!r.why_not.empty()) return r;
  Result<UniqueFd> fd = open_file(ram_file, O_RDONLY);
  if (!fd.is_ok()) {
    r.why_not = fd.status().message();
    return r;
  }
  auto t =
      UffdWriteTracker::start(qemu_pid, fd->get(), def.memory_bytes / kPageSize, UffdWriteTracker::Coverage::whole);
  if (!t.is_ok()) {
    r.why_not = "no write tracker: " + t.status().message();
    return r;
  }
  r.tracker = std::move(*t);
  return r;
}

}  // namespace bnf::qemu
