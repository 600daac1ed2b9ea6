#include "vm/source/shared_trip.hpp"

#include <fcntl.h>

#include <array>
#include <string_view>

#include "common/elapsed.hpp"
#include "common/files.hpp"
#include "common/page.hpp"
#include "vm/source/relayed_trip.hpp"
#include "vm/source/shared_rounds.hpp"
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

SharedReadiness prepare_shared(const VmDefinition& def, const std::string& ram_file, int qemu_pid) {
  SharedReadiness r;
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

Result<Departed> shared_trip(TripContext& x, std::unique_ptr<WriteTracker> tracker, const StartSharedQemu& start) {
  BNF_ASSIGN_OR_RETURN(RamView ram, view_ram(x));
  const PageDigester h(x.g.key);
  SharedRounds rounds(x.c, ram.bytes, ram.file.get(), std::move(tracker), h, std::move(x.g.base),
                      {.downtime_ms = static_cast<double>(x.opt.downtime_limit_ms), .max_rounds = x.opt.max_rounds});
  const uint64_t pages_total = x.def.memory_bytes / kPageSize;
  BNF_TRY(rounds.precopy([&x, pages_total](const SharedRoundCounts& n) {
    if (!x.progress) return;
    x.progress({{"seconds", since(x.t0)},
                {"mode", x.g.rep.mode},
                {"ram_mode", "shared"},
                {"round", n.rounds},
                {"pages_total", pages_total},
                {"pages_seen", pages_total},
                {"pages_sent", n.pages_sent},
                {"wire_bytes", x.c.stats().bytes_sent}});
  }));
  const auto t_stream = Clock::now();
  BNF_ASSIGN_OR_RETURN(UniqueFd qfd, start());
  return relay_trip(x, std::move(qfd), t_stream, &rounds);
}

}  // namespace bnf::qemu
