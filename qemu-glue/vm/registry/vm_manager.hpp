// The daemon's VM registry: each VM's definition, where it runs, its QEMU
// and whether a trip holds it. Trips themselves are objects of their own
// (source/departure.hpp, destination/arrival.hpp); the registry reserves a VM
// for one, runs it and records what it changed (vm_trips.cpp).
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "bitmap/writes_since_arrival.hpp"
#include "common/log.hpp"
#include "launch/qemu_args.hpp"
#include "launch/qemu_process.hpp"
#include "launch/vm_definition.hpp"
#include "protocol/authenticated_transport.hpp"
#include "protocol/control.hpp"
#include "qmp/qmp_client.hpp"
#include "snapshot/snapshot_store.hpp"
#include "transport/transport.hpp"
#include "vm/destination/stream_rendezvous.hpp"
#include "vm/registry/warm_ram.hpp"
#include "vm/trip/migration_report.hpp"
#include "vm/trip/vm_dir.hpp"

namespace bnf::qemu {

struct Arrived;  // destination/arrival.hpp

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
    ArrivalTracking tracking;       // what its guest wrote since it arrived here, or why that is not known
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
  // The VM left for `to`: its retained snapshot is `dep`.
  Status left_for(Vm& vm, const Manifest& dep, const Endpoint& to);
  void adopt(Vm& vm, int pid);
  // The VM runs here now (started, arrived, restored or adopted) as `proc`.
  void runs_here(Vm& vm, QemuProcess proc, ArrivalTracking tracking);
  // The slot for an arriving VM, busy until the guard goes; a VM this host
  // never knew is forgotten then unless it arrived.
  class ArrivalSlot;
  Result<std::unique_ptr<ArrivalSlot>> reserve_arrival(const VmDefinition& def);
  Status arrived_here(Vm& vm, const VmDefinition& def, Arrived& got);
  Result<Vm*> find(const std::string& name);
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
