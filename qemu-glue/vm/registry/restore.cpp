// `bnf restore`: the VM resumes on this host from its retained snapshot, exactly
// where it was at switchover. QEMU loads the kept stream (small RAM blocks and
// device state) on top of the RAM file, which holds the main block already.

#include <algorithm>
#include <filesystem>

#include "common/files.hpp"
#include "qmp/qmp_client.hpp"
#include "stream/stream_capabilities.hpp"
#include "vm/registry/vm_manager.hpp"

namespace bnf::qemu {

using nlohmann::json;

namespace {

// A stream kept by a shared-mode trip names x-ignore-shared: the QEMU that
// loads it must have the capability before it reads it.
Result<bool> kept_stream_ignores_shared(const std::string& blob) {
  BNF_ASSIGN_OR_RETURN(std::string bytes, read_file(blob));
  BNF_ASSIGN_OR_RETURN(std::vector<std::string> caps, stream_capabilities(bytes));
  return std::find(caps.begin(), caps.end(), "x-ignore-shared") != caps.end();
}

Status load_kept_stream(QmpClient& qmp, const std::string& blob, bool ignore_shared) {
  if (ignore_shared) {
    const json caps = json::array({{{"capability", "x-ignore-shared"}, {"state", true}}});
    BNF_TRY(qmp.execute("migrate-set-capabilities", {{"capabilities", caps}}).status());
    BNF_TRY(qmp.execute("migrate-incoming", {{"uri", "exec:cat " + blob}}).status());
  }
  return qmp.wait_incoming_loaded(std::chrono::seconds(30)).status().context("restoring the snapshot's device state");
}

}  // namespace

Result<json> VmManager::restore(const std::string& name) {
  std::unique_lock lk(mu_);
  BNF_ASSIGN_OR_RETURN(Vm * vm, find(name));
  if (vm->busy) return Status(Errc::busy, "VM '" + name + "' is being migrated");
  if (vm->proc && vm->proc->running()) return Status(Errc::busy, "VM '" + name + "' already runs here");
  BNF_ASSIGN_OR_RETURN(Manifest m, store_.manifest(name));
  if (store_.is_live(name)) return Status(Errc::busy, "snapshot '" + name + "' is in use already");
  if (!m.has_device_state) return Status(Errc::not_found, "snapshot '" + name + "' has no device state to restore");
  BNF_TRY(check_qemu_args(vm->def));
  const std::string image = store_.image_path(m);
  const std::string blob = store_.dir_of(name) + "/device-state";
  BNF_ASSIGN_OR_RETURN(const bool ignore_shared, kept_stream_ignores_shared(blob));
  // From here the image changes: it is no longer a base anybody may reuse.
  BNF_TRY(store_.mark_live(name, image));
  const LaunchPaths lp = paths(name, image);
  std::error_code ec;
  std::filesystem::remove(lp.qmp_socket, ec);
  BNF_ASSIGN_OR_RETURN(QemuProcess proc,
                       QemuProcess::spawn(qemu_command(vm->def, lp, ignore_shared ? "defer" : "exec:cat " + blob),
                                          vm_dir(name) + "/qemu.log"));
  {
    BNF_ASSIGN_OR_RETURN(QmpClient qmp, QmpClient::connect(lp.qmp_socket, std::chrono::seconds(10)));
    BNF_TRY(load_kept_stream(qmp, blob, ignore_shared));
    BNF_ASSIGN_OR_RETURN(json st, qmp.execute("query-status"));
    if (st.value("status", std::string()) != "running") BNF_TRY(qmp.execute("cont").status());
  }
  vm->ram_file = image;
  runs_here(*vm, std::move(proc), {nullptr, "the VM was restored here"});
  BNF_TRY(save(*vm));
  log_.info("vm {}: restored from snapshot epoch {}", name, m.epoch);
  return describe(name, *vm);
}

}  // namespace bnf::qemu
