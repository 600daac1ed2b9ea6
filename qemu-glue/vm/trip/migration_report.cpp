#include "vm/trip/migration_report.hpp"

namespace bnf::qemu {

using nlohmann::json;

json MigrationReport::to_json() const {
  json j = trip_json();
  j.update({{"stream_bytes_in", stream_bytes_in},
            {"stream_bytes_forwarded", stream_bytes_forwarded},
            {"return_path_bytes", return_path_bytes},
            {"snapshot_bytes_released", snapshot_bytes_released},
            {"pages_superseded", pages_superseded},
            {"pages_fixed_at_switchover", pages_fixed_at_switchover},
            {"running_after_s", running_after_s},
            {"downtime_ms", downtime_ms},
            {"source_downtime_ms", source_downtime_ms},
            {"phases", phases},
            {"rounds", rounds},
            {"direct", direct},
            {"ram_mode", ram_mode},
            {"ram_mode_reason", ram_mode_reason},
            {"destination_differs", destination_differs}});
  if (!write_tracker.empty())
    j.update({{"pages_hashed_at_stop", pages_hashed_at_stop},
              {"pages_hashed_after_settle", pages_hashed_after_settle},
              {"write_tracker", write_tracker}});
  if (!shared.is_null()) j["shared"] = shared;
  if (!first_pass_held_back_by.empty())
    j.update({{"first_pass_held_back_by", first_pass_held_back_by}, {"qemu_cpu_wait", qemu_cpu_wait}});
  return j;
}

}  // namespace bnf::qemu
