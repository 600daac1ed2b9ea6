// What a VM trip reports to the operator (`bnf vm migrate --json`), and the
// options a departure takes.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/choice.hpp"
#include "common/trip_report.hpp"

namespace bnf::qemu {

struct MigrationReport : TripReport {
  uint64_t pages_superseded = 0;           // held back, then replaced by a newer version: never sent
  uint64_t pages_fixed_at_switchover = 0;  // changed pages QEMU did not resend, sent by the switchover check
  uint64_t pages_hashed_at_stop = 0;       // ... pages it hashed in the downtime
  uint64_t pages_hashed_after_settle = 0;  // ... direct trips: never written nor hashed ahead, compared after it
  // The destination resumed with an image that is not the stopped VM, found
  // only after it resumed (check off, or in pages compared after the settle).
  bool destination_differs = false;
  std::string write_tracker;  // ... how it knew the others had not changed ("": check off)
  uint64_t stream_bytes_in = 0, stream_bytes_forwarded = 0;
  uint64_t return_path_bytes = 0;        // relayed trips: the destination QEMU's return path, relayed to ours
  uint64_t snapshot_bytes_released = 0;  // zero pages of the retained snapshot given back to the host
  // seconds: the whole command, retained snapshot committed
  double running_after_s = 0;     // from the command until the VM runs on the destination
  double downtime_ms = 0;         // source QEMU stopped -> destination QEMU resumed (both hosts' clocks)
  double source_downtime_ms = 0;  // QEMU's own figure: stop -> its stream is written
  nlohmann::json phases = nlohmann::json::object();  // where the time went, seconds
  uint64_t rounds = 0;                               // QEMU's passes over guest RAM
  bool direct = false;                               // QEMU streamed to the destination itself
  std::string first_pass_held_back_by;               // direct trips: "cpu" or "link" (a stop limit: link only)
  double qemu_cpu_wait = -1;                         // ... QEMU's migration thread's wait for a CPU (share)
  // Who moved guest RAM: "shared" (bnf, from the RAM file, in rounds of
  // written pages) or "stream" (QEMU's stream, filtered); and why not shared.
  std::string ram_mode = "stream";
  std::string ram_mode_reason;
  nlohmann::json shared;  // shared mode: its rounds, what stopped them, the link and write rates
  [[nodiscard]] nlohmann::json to_json() const;
};

// QEMU's downtime limit during its first pass, which it cannot meet: every
// trip's first pass runs to its end with the VM running (source/trip_start.cpp).
inline constexpr int kFirstPassDowntimeMs = 1;

struct MigrateOptions {
  int downtime_limit_ms = 300;  // QEMU's default
  // Who moves guest RAM (see MigrationReport::ram_mode). stream (the
  // default); auto: shared where this host, the VM and the destination allow
  // it, else stream, saying why; shared: a trip that cannot be shared fails
  // and the VM stays here.
  enum class RamMode { stream, automatic, shared };
  RamMode ram_mode = RamMode::stream;
  unsigned max_rounds = 30;  // shared mode: rounds after round 0, at most
  // A full trip over TCP lets QEMU stream straight to the destination daemon
  // (destination/direct_arrival.hpp) instead of through this one; false: always relay.
  bool direct = true;
  // Re-hash the stopped VM's RAM at switchover and resend what QEMU missed
  // (see DeparturePagesOptions::switchover_check). Unset: on for TCG VMs.
  std::optional<bool> switchover_check;
  // With the check on, compare every page before the VM resumes there. Off
  // (`--switchover-check written`), a direct trip compares the pages nothing
  // wrote during it (their bytes are the ones QEMU read) and it did not hash
  // ahead only after the VM resumed there: a difference found then is already
  // in the running guest, so it is not the default.
  bool check_all_before_resume = true;
  // Let the check learn which pages QEMU wrote during the trip, so that it
  // re-hashes only those at the stop (UffdWriteTracker). auto: in direct
  // trips (there it takes the re-hash out of the downtime; in relayed trips
  // it cost more total time than it saved downtime, measured); on: in
  // relayed trips too; off: never.
  enum class TrackWrites { automatic, on, off };
  TrackWrites track_writes = TrackWrites::automatic;
};

// `--switchover-check` (control socket: `switchover_check`): auto leaves
// MigrateOptions::switchover_check unset; on and full are the same.
enum class SwitchoverCheck { automatic, on, full, written, off };
inline constexpr std::array<Choice<SwitchoverCheck>, 5> kSwitchoverChecks{{{"auto", SwitchoverCheck::automatic},
                                                                           {"on", SwitchoverCheck::on},
                                                                           {"full", SwitchoverCheck::full},
                                                                           {"written", SwitchoverCheck::written},
                                                                           {"off", SwitchoverCheck::off}}};
// `--write-tracker` (control socket: `write_tracker`).
inline constexpr std::array<Choice<MigrateOptions::TrackWrites>, 3> kWriteTrackers{
    {{"auto", MigrateOptions::TrackWrites::automatic},
     {"on", MigrateOptions::TrackWrites::on},
     {"off", MigrateOptions::TrackWrites::off}}};

// `--mode` (control socket: `mode`); the first is the default.
inline constexpr std::array<Choice<MigrateOptions::RamMode>, 3> kRamModes{
    {{"stream", MigrateOptions::RamMode::stream},
     {"auto", MigrateOptions::RamMode::automatic},
     {"shared", MigrateOptions::RamMode::shared}}};

// Sets the switchover check's two options as `check` says.
inline void apply_switchover_check(SwitchoverCheck check, MigrateOptions& o) {
  if (check != SwitchoverCheck::automatic) o.switchover_check = check != SwitchoverCheck::off;
  o.check_all_before_resume = check != SwitchoverCheck::written;
}

}  // namespace bnf::qemu
