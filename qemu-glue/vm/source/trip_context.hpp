// What a departure's transfer works with (TripContext) and hands back
// (Departed), whichever its shape: relayed (relayed_trip.hpp) or direct
// (direct_trip.hpp).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>

#include "bitmap/write_tracker.hpp"
#include "common/files.hpp"
#include "common/log.hpp"
#include "common/unique_fd.hpp"
#include "digest/page_digest.hpp"
#include "launch/vm_definition.hpp"
#include "qmp/qmp_client.hpp"
#include "transport/transport.hpp"
#include "vm/registry/warm_ram.hpp"
#include "vm/source/agreement.hpp"
#include "vm/trip/migration_report.hpp"

namespace bnf::qemu {

using Clock = std::chrono::steady_clock;

// Everything a transfer reads; it takes the agreement's base and the tracker.
struct TripContext {
  QmpClient& qmp;
  transport::Connection& c;
  Agreement& g;
  const VmDefinition& def;
  const std::string& ram_file;
  const WarmRam* warm;  // the VM's RAM as kept while it ran here, if it could be mapped
  int qemu_pid;
  const MigrateOptions& opt;
  const std::function<void(const nlohmann::json&)>& progress;
  const Logger& log;
  Clock::time_point t0;
  bool return_path = false;  // relayed trips: QEMU's return path is on and relayed
  bool check = false;        // the switchover check is on (MigrateOptions::switchover_check; auto: TCG VMs)
  // The switchover check's write tracker; null if none (`no_tracker` says
  // why). The trip takes it.
  std::unique_ptr<WriteTracker> tracker;
  std::string no_tracker;
  uint64_t read_before_tracking = 0;  // pages [0, this) QEMU may have read before the tracker started
};

// What a transfer hands over for the retained snapshot, once the VM runs there.
struct Departed {
  MigrationReport rep;
  DigestTable table;    // the VM's memory at switchover
  std::string stream;   // the stream state kept for a restore (device state)
  nlohmann::json done;  // VM_DONE
  std::optional<nlohmann::json> stop_event;
  // Set where `table` is still being made: run once the VM runs there and
  // before our QEMU quits, while the RAM it hashes is still QEMU's and the
  // trip's digester still lives.
  std::function<void(Departed&)> complete;
};

// The VM's RAM as the switchover check reads it: the warm mapping kept while
// it ran here, or one of its own; and the file (its holes are zero pages).
struct RamView {
  Mapping own;  // empty when the warm mapping serves
  std::span<const std::byte> bytes;
  UniqueFd file;
};
Result<RamView> view_ram(const TripContext& x);

// What the switchover check reports: how it knew which pages to hash again.
void report_check(MigrationReport& rep, const TripContext& x, uint64_t hashed_at_stop, bool tracked,
                  const std::string& why_not);

}  // namespace bnf::qemu
