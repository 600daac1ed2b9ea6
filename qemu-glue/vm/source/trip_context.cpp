#include "vm/source/trip_context.hpp"

#include <fcntl.h>

namespace bnf::qemu {

Result<RamView> view_ram(const TripContext& x) {
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(x.ram_file, O_RDONLY));
  if (x.warm != nullptr) return RamView{Mapping(), x.warm->bytes(), std::move(fd)};
  BNF_ASSIGN_OR_RETURN(Mapping map, map_file(fd.get(), x.def.memory_bytes, false));
  const std::span<const std::byte> bytes = map.bytes();
  return RamView{std::move(map), bytes, std::move(fd)};
}

void report_check(MigrationReport& rep, const TripContext& x, uint64_t hashed_at_stop, bool tracked,
                  const std::string& why_not) {
  rep.pages_hashed_at_stop = hashed_at_stop;
  rep.write_tracker = tracked ? "uffd-wp" : "none: " + why_not;
  if (!tracked)
    x.log.info("vm {}: the switchover check hashed {} pages in the downtime: QEMU's writes were not tracked: {}",
               x.def.name, hashed_at_stop, why_not);
}

}  // namespace bnf::qemu
