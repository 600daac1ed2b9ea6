// The daemon's VMs: definitions, their QEMU processes, and migrations in both
// directions (stream mode, see docs/stream-mode-design.md).
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/log.hpp"
#include "common/trip_report.hpp"
#include "launch/qemu_args.hpp"
#include "launch/qemu_process.hpp"
#include "launch/vm_definition.hpp"
#include "protocol/authenticated_transport.hpp"
#include "protocol/control.hpp"
#include "qmp/qmp_client.hpp"
#include "snapshot/snapshot_store.hpp"
#include "transport/transport.hpp"
#include "vm/stream_rendezvous.hpp"
#include "vm/warm_ram.hpp"

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
  [[nodiscard]] nlohmann::json to_json() const;
};

// QEMU's downtime limit during its first pass, which it cannot meet: every
// trip's first pass runs to its end with the VM running (migration_source.cpp).
inline constexpr int kFirstPassDowntimeMs = 1;

struct MigrateOptions {
  int downtime_limit_ms = 300;  // QEMU's default
  // A full trip over TCP lets QEMU stream straight to the destination daemon
  // (direct_arrival.hpp) instead of through this one; false: always relay.
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

// What an arriving VM's trip is to be (VmManager::plan_arrival): the write
// plan (full or incremental against the retained snapshot) and, for a full
// trip that could have been incremental, why not.
struct Arrival {
  WritePlan plan;
  std::string fallback;
};
struct ArrivalTimes {
  std::chrono::steady_clock::time_point receive, stream_end, loaded, committed;
};
// A trip that arrived: the committed image, the QEMU that runs it, and what
// VM_DONE tells the source.
struct Arrived {
  Manifest manifest;
  std::optional<QemuProcess> proc;
  std::string stream_for_source;  // direct trips: the device-state blob the source did not see
  double resumed_at = 0;
  ArrivalTimes times;
};

class VmManager {
 public:
  // `peer_timeout_ms`: a silent peer (or its QEMU's stream) counts as gone
  // after this long. `qemu_args`: which extra QEMU arguments its VMs may
  // carry, whether created here or arriving from a peer.
  VmManager(std::string state_dir, SnapshotStore& store, proto::AuthenticatedTransport& transport, const Logger& log,
            unsigned peer_timeout_ms = 30000, QemuArgPolicy qemu_args = {});
  ~VmManager();
  VmManager(const VmManager&) = delete;
  VmManager& operator=(const VmManager&) = delete;

  Result<nlohmann::json> create(const VmDefinition& def);
  Result<nlohmann::json> start(const std::string& name);
  Result<nlohmann::json> stop(const std::string& name);
  Result<nlohmann::json> list();
  Result<nlohmann::json> status(const std::string& name);
  // Source side: moves the running VM `name` to the daemon at `to`.
  // `progress` hears about the trip every half second or so.
  Result<MigrationReport> migrate(const std::string& name, const Endpoint& to, const MigrateOptions& opt = {},
                                  const std::function<void(const nlohmann::json&)>& progress = nullptr);
  // Restarts a VM that left this host from its retained snapshot (RAM file plus
  // the stream state kept at switchover), e.g. after the other host died.
  Result<nlohmann::json> restore(const std::string& name);
  // Destination side: serves a connection whose first frame is VM_HELLO (a
  // trip) or VM_STREAM (a direct trip's QEMU stream).
  Status serve_incoming(transport::Connection& c, const proto::Frame& first);

 private:
  struct Vm {
    VmDefinition def;
    std::string ram_file;
    std::optional<QemuProcess> proc;
    std::unique_ptr<WarmRam> warm;  // while it runs here: its RAM, faulted in for the departure's re-hash
    std::string where = "here";     // "here" | the peer it left for
    bool busy = false;              // a migration is moving it: other operations wait their turn
  };
  // Marks a VM busy for the life of the guard; mu_ is not held meanwhile.
  class BusyGuard {
   public:
    BusyGuard(std::mutex& mu, Vm& vm) : mu_(mu), vm_(vm) {}
    ~BusyGuard() {
      std::lock_guard lk(mu_);
      vm_.busy = false;
    }
    BusyGuard(const BusyGuard&) = delete;
    BusyGuard& operator=(const BusyGuard&) = delete;

   private:
    std::mutex& mu_;
    Vm& vm_;
  };
  [[nodiscard]] std::string vm_dir(const std::string& name) const;
  [[nodiscard]] LaunchPaths paths(const std::string& name, const std::string& ram_file) const;
  // Before every QEMU start too: a definition an older bnf accepted may carry what this one refuses.
  [[nodiscard]] Status check_qemu_args(const VmDefinition& def) const;
  Status save(const Vm& vm) const;
  Result<MigrationReport> migrate_once(const std::string& name, const Endpoint& to, const MigrateOptions& opt,
                                       const std::function<void(const nlohmann::json&)>& progress,
                                       const std::string& force_full);
  Result<Vm*> reserve_departure(const std::string& name);
  Status keep_departure(Vm& vm, const Endpoint& to, QmpClient& qmp, const DigestKey& key, const DigestTable& table,
                        const std::string& stream, MigrationReport& rep, WarmRam*& paused);
  void adopt(Vm& vm, int pid);
  // The VM runs here now (started, arrived, restored or adopted) as `proc`.
  void runs_here(Vm& vm, QemuProcess proc);
  Result<Vm*> find(const std::string& name);
  Status serve_stream(transport::Connection& c, const proto::Frame& f);
  Result<Arrival> plan_arrival(const VmDefinition& def, const nlohmann::json& hello, const std::string& peer);
  Result<Arrived> arrive(transport::Connection& c, const VmDefinition& def, const nlohmann::json& hello,
                         const Arrival& a, SnapshotWriter& w);
  nlohmann::json describe(const std::string& name, Vm& vm);

  std::string state_dir_;
  SnapshotStore& store_;
  proto::AuthenticatedTransport& transport_;  // its connections prove the peer key
  const Logger& log_;
  unsigned peer_timeout_ms_;
  QemuArgPolicy qemu_args_;
  // An arriving VM's QEMU starts in the background (lowest CPU priority) where
  // this daemon may give it its priority back once it is up.
  const bool background_arrivals_ = QemuProcess::may_lower_nice();
  std::mutex mu_;  // guards vms_ and each Vm's fields; never held across a migration
  std::map<std::string, Vm> vms_;
  StreamRendezvous streams_;  // direct trips' QEMU streams, until their trips take them
};

}  // namespace bnf::qemu
