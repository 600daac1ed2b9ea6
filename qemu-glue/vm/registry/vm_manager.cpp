#include "vm/registry/vm_manager.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>

#include "common/files.hpp"
#include "qmp/qmp_client.hpp"

namespace bnf::qemu {

using nlohmann::json;
namespace fs = std::filesystem;

VmManager::VmManager(std::string state_dir, SnapshotStore& store, proto::AuthenticatedTransport& transport,
                     const Logger& log, unsigned peer_timeout_ms, QemuArgPolicy qemu_args)
    : state_dir_(std::move(state_dir)),
      store_(store),
      transport_(transport),
      log_(log),
      peer_timeout_ms_(peer_timeout_ms),
      qemu_args_(std::move(qemu_args)) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(state_dir_ + "/vms", ec)) {
    auto text = read_file(e.path().string() + "/vm.json");
    if (!text.is_ok()) continue;
    json j = json::parse(*text, nullptr, false);
    if (j.is_discarded()) continue;
    auto def = VmDefinition::from_json(j["definition"]);
    if (!def.is_ok()) continue;
    Vm vm{*def, j.value("ram_file", std::string()), std::nullopt, nullptr, j.value("where", std::string("here"))};
    adopt(vm, j.value("qemu_pid", 0));
    vms_.emplace(def->name, std::move(vm));
  }
}

// A daemon that stops leaves its VMs running (as a restarted daemon finds them).
VmManager::~VmManager() {
  for (auto& [name, vm] : vms_)
    if (vm.proc) vm.proc->detach();
}

// The QEMU a previous daemon started for this VM, if it still runs.
void VmManager::adopt(Vm& vm, int pid) {
  if (pid <= 0 || vm.where != "here") return;
  auto p = QemuProcess::adopt(pid, vm.ram_file);
  if (!p.is_ok()) {
    log_.warn("vm {}: its QEMU (pid {}) is gone: {}", vm.def.name, pid, p.status().message());
    return;
  }
  runs_here(vm, std::move(*p), {nullptr, "the daemon restarted while the VM ran here"});
  log_.info("vm {}: adopted its running QEMU, pid {}", vm.def.name, pid);
}

void VmManager::runs_here(Vm& vm, QemuProcess proc, ArrivalTracking tracking) {
  vm.proc = std::move(proc);
  vm.tracking = std::move(tracking);
  vm.where = "here";
  auto warm = WarmRam::open(vm.ram_file, vm.def.memory_bytes);
  if (!warm.is_ok())  // its departure then maps the RAM file itself
    log_.warn("vm {}: cannot map its RAM file: {}", vm.def.name, warm.status().message());
  vm.warm = warm.is_ok() ? std::move(*warm) : nullptr;
}

std::string VmManager::vm_dir(const std::string& name) const { return state_dir_ + "/vms/" + name; }

LaunchPaths VmManager::paths(const std::string& name, const std::string& ram_file) const {
  return VmDir{vm_dir(name)}.launch(ram_file);
}

Status VmManager::check_qemu_args(const VmDefinition& def) const {
  return qemu_args_.check(def.extra_args, vm_dir(def.name));
}

Status VmManager::save(const Vm& vm) const {
  BNF_TRY(make_dirs(vm_dir(vm.def.name)));
  const int pid = vm.proc ? vm.proc->pid() : 0;  // found again by a restarted daemon
  const json j = {{"definition", vm.def.to_json()}, {"ram_file", vm.ram_file}, {"where", vm.where}, {"qemu_pid", pid}};
  return write_file_atomic(vm_dir(vm.def.name) + "/vm.json", j.dump(2) + "\n");
}

Result<VmManager::Vm*> VmManager::find(const std::string& name) {
  auto it = vms_.find(name);
  if (it == vms_.end()) return Status(Errc::not_found, "no VM named '" + name + "' on this host");
  return &it->second;
}

Result<json> VmManager::create(const VmDefinition& def) {
  BNF_TRY(def.validate());
  BNF_TRY(check_qemu_args(def));
  std::lock_guard lk(mu_);
  if (vms_.count(def.name) != 0) return Status(Errc::busy, "a VM named '" + def.name + "' exists on this host");
  BNF_ASSIGN_OR_RETURN(std::string ram, store_.new_live_image(def.name, def.memory_bytes));
  Vm vm{def, ram, std::nullopt, nullptr, "here"};
  BNF_TRY(save(vm));
  auto& ref = vms_.emplace(def.name, std::move(vm)).first->second;
  return describe(def.name, ref);
}

Result<json> VmManager::start(const std::string& name) {
  std::lock_guard lk(mu_);
  BNF_ASSIGN_OR_RETURN(Vm * vm, find(name));
  if (vm->where != "here") return Status(Errc::invalid_argument, "VM '" + name + "' runs on " + vm->where);
  if (vm->proc && vm->proc->running()) return Status(Errc::busy, "VM '" + name + "' is already running");
  BNF_TRY(check_qemu_args(vm->def));
  std::error_code ec;
  fs::remove(vm_dir(name) + "/qmp.sock", ec);
  BNF_ASSIGN_OR_RETURN(QemuProcess p, QemuProcess::spawn(qemu_command(vm->def, paths(name, vm->ram_file), std::nullopt),
                                                         vm_dir(name) + "/qemu.log"));
  runs_here(*vm, std::move(p), {nullptr, "the VM was started here"});
  {  // QMP takes one client at a time: let go before describe() asks again
    auto qmp = QmpClient::connect(paths(name, vm->ram_file).qmp_socket, std::chrono::seconds(10));
    if (!qmp.is_ok()) {
      vm->proc.reset();
      vm->warm.reset();
      return Status(qmp.status().code(),
                    "QEMU did not come up (see " + vm_dir(name) + "/qemu.log): " + qmp.status().message());
    }
  }
  log_.info("vm {}: started, pid {}", name, vm->proc->pid());
  BNF_TRY(save(*vm));
  return describe(name, *vm);
}

Result<json> VmManager::stop(const std::string& name) {
  std::lock_guard lk(mu_);
  BNF_ASSIGN_OR_RETURN(Vm * vm, find(name));
  if (vm->busy) return Status(Errc::busy, "VM '" + name + "' is being migrated");
  if (!vm->proc || !vm->proc->running()) return Status(Errc::invalid_argument, "VM '" + name + "' is not running");
  auto qmp = QmpClient::connect(paths(name, vm->ram_file).qmp_socket, std::chrono::seconds(2));
  if (qmp.is_ok()) (void)qmp->execute("quit");
  if (!vm->proc->wait(std::chrono::seconds(10)).is_ok()) vm->proc->kill();
  vm->proc.reset();
  vm->warm.reset();
  BNF_TRY(save(*vm));
  return describe(name, *vm);
}

json VmManager::describe(const std::string& name, Vm& vm) {
  const LaunchPaths p = paths(name, vm.ram_file);
  std::string state = vm.where == "here" ? "stopped" : "away";
  if (vm.proc && vm.proc->running()) {
    auto qmp = QmpClient::connect(p.qmp_socket, std::chrono::seconds(2));
    auto st = qmp.is_ok() ? qmp->execute("query-status") : Result<json>(qmp.status());
    state = st.is_ok() ? st->value("status", std::string("unknown")) : "unreachable";
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return {{"name", name},
          {"state", state},
          {"host", vm.where == "here" ? std::string(host) : vm.where},
          {"memory_bytes", vm.def.memory_bytes},
          {"qemu_pid", vm.proc && vm.proc->running() ? vm.proc->pid() : 0},
          {"qmp_socket", p.qmp_socket},
          {"ram_file", vm.ram_file},
          {"serial_log", p.serial_log},
          {"extra_args", vm.def.extra_args}};
}

Result<json> VmManager::list() {
  std::lock_guard lk(mu_);
  json arr = json::array();
  for (auto& [name, vm] : vms_) arr.push_back(describe(name, vm));
  return arr;
}

Result<json> VmManager::status(const std::string& name) {
  std::lock_guard lk(mu_);
  BNF_ASSIGN_OR_RETURN(Vm * vm, find(name));
  return describe(name, *vm);
}

}  // namespace bnf::qemu
