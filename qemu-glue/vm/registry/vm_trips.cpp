// The registry's side of every trip: it reserves the VM, runs the trip object
// (source/departure.hpp, destination/arrival.hpp) and records what changed.
#include "vm/destination/arrival.hpp"
#include "vm/registry/vm_manager.hpp"
#include "vm/source/departure.hpp"

namespace bnf::qemu {

using nlohmann::json;

Result<MigrationReport> VmManager::migrate(const std::string& name, const Endpoint& to, const MigrateOptions& opt,
                                           const std::function<void(const json&)>& progress) {
  auto r = migrate_once(name, to, opt, progress, "");
  if (r.is_ok() || r.status().code() != Errc::base_changed || !r.status().from_peer()) return r;
  // The destination found that its retained snapshot no longer holds the bytes
  // its table says (checked during the trip): the VM runs here still; go again,
  // asking for a full trip. The report's fallback says why.
  const std::string why(r.status().peer_reason());
  log_.warn("vm {}: {}; trying again with a full trip", name, why);
  return migrate_once(name, to, opt, progress, why);
}

// Marks a VM that runs here busy for its departure (the caller's BusyGuard
// clears it); status requests and incoming trips of other VMs go on meanwhile.
Result<VmManager::Vm*> VmManager::reserve_departure(const std::string& name) {
  std::lock_guard lk(mu_);
  BNF_ASSIGN_OR_RETURN(Vm * vm, find(name));
  if (vm->busy) return Status(Errc::busy, "VM '" + name + "' is being migrated already");
  if (!vm->proc || !vm->proc->running()) return Status(Errc::invalid_argument, "VM '" + name + "' is not running here");
  vm->busy = true;
  return vm;
}

Result<MigrationReport> VmManager::migrate_once(const std::string& name, const Endpoint& to, const MigrateOptions& opt,
                                                const std::function<void(const json&)>& progress,
                                                const std::string& force_full) {
  BNF_ASSIGN_OR_RETURN(Vm * vm, reserve_departure(name));
  BusyGuard busy(mu_, *vm);
  const DepartureServices services{store_, transport_, log_, peer_timeout_ms_};
  const VmDir dir{vm_dir(name)};
  Departure trip(services,
                 {vm->def, vm->ram_file, *vm->proc, vm->warm.get(), vm->tracking, dir.launch(vm->ram_file).qmp_socket,
                  dir.file("migrate.sock")},
                 to, opt, progress, force_full);
  return trip.run([&](const Manifest& dep) { return left_for(*vm, dep, to); });
}

Status VmManager::left_for(Vm& vm, const Manifest& dep, const Endpoint& to) {
  std::lock_guard relock(mu_);
  vm.tracking.lose("the VM left");
  vm.proc.reset();
  vm.warm.reset();
  vm.ram_file = store_.image_path(dep);
  vm.where = to.to_string();
  return save(vm);
}

class VmManager::ArrivalSlot {
 public:
  ArrivalSlot(VmManager& registry, std::map<std::string, Vm>::iterator slot, bool is_new)
      : registry_(registry), slot_(slot), is_new_(is_new) {}
  ~ArrivalSlot() {
    std::lock_guard g(registry_.mu_);
    if (!arrived_ && is_new_)
      registry_.vms_.erase(slot_);
    else
      slot_->second.busy = false;
  }
  ArrivalSlot(const ArrivalSlot&) = delete;
  ArrivalSlot& operator=(const ArrivalSlot&) = delete;
  Vm& vm() { return slot_->second; }
  void arrived() { arrived_ = true; }

 private:
  VmManager& registry_;
  std::map<std::string, Vm>::iterator slot_;
  bool is_new_;
  bool arrived_ = false;
};

Result<std::unique_ptr<VmManager::ArrivalSlot>> VmManager::reserve_arrival(const VmDefinition& def) {
  const std::string& name = def.name;
  std::lock_guard lk(mu_);
  auto [slot, is_new] = vms_.try_emplace(name, Vm{def, "", std::nullopt, nullptr, "arriving"});
  if (slot->second.busy) return Status(Errc::busy, "VM '" + name + "' is being migrated on this host");
  if (slot->second.proc && slot->second.proc->running())
    return Status(Errc::busy, "VM '" + name + "' already runs on this host");
  slot->second.busy = true;
  return std::make_unique<ArrivalSlot>(*this, slot, is_new);
}

Status VmManager::arrived_here(Vm& vm, const VmDefinition& def, Arrived& got) {
  std::lock_guard lk(mu_);
  vm.def = def;
  vm.ram_file = got.image_file;
  if (got.tracking.writes) got.tracking.writes->arrived_as(got.manifest.lineage, got.manifest.epoch);
  runs_here(vm, std::move(*got.proc), std::move(got.tracking));
  return save(vm);
}

Status VmManager::serve_incoming(transport::Connection& c, const proto::Frame& first) {
  if (first.header.type == proto::FrameType::vm_stream) return serve_direct_stream(c, first, streams_);
  BNF_ASSIGN_OR_RETURN(json hello, proto::parse_json_meta(first));
  BNF_ASSIGN_OR_RETURN(VmDefinition def, read_vm_hello(hello));
  BNF_TRY(check_qemu_args(def));  // the peer's definition, checked as one made here
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<ArrivalSlot> slot, reserve_arrival(def));
  const ArrivalServices services{store_, streams_, log_, peer_timeout_ms_, background_arrivals_};
  ArrivingTrip trip(services, c, def, hello, VmDir{vm_dir(def.name)});
  BNF_ASSIGN_OR_RETURN(Arrived got, trip.run());
  BNF_TRY(arrived_here(slot->vm(), def, got));
  slot->arrived();
  log_.info("vm {}: arrived from {} ({}, epoch {})", def.name, c.peer(), trip.plan().plan.full ? "full" : "incremental",
            got.manifest.epoch);
  return send_vm_done(c, got);
}

}  // namespace bnf::qemu
