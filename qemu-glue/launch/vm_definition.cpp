#include "launch/vm_definition.hpp"

#include <fmt/format.h>

#include "protocol/control.hpp"
#include "snapshot/snapshot_store.hpp"

namespace bnf::qemu {

Status VmDefinition::validate() const {
  BNF_TRY(SnapshotStore::validate_name(name).context("VM name"));
  if (memory_bytes == 0 || memory_bytes % (2U << 20) != 0)
    return {Errc::invalid_argument, "VM memory must be a non-zero multiple of 2 MiB"};
  if (accel != "tcg" && accel != "kvm") return {Errc::invalid_argument, "accel must be tcg or kvm"};
  return Status::ok();
}

nlohmann::json VmDefinition::to_json() const {
  return {{"name", name}, {"memory_bytes", memory_bytes}, {"accel", accel}, {"extra_args", extra_args}};
}

Result<VmDefinition> VmDefinition::from_json(const nlohmann::json& j) {
  VmDefinition d;
  try {
    d.name = j.at("name").get<std::string>();
    auto memory = proto::field<uint64_t>(j, "memory_bytes");  // strict: no negative or fractional size
    if (!memory.is_ok()) return Status(Errc::invalid_argument, "VM definition: " + memory.status().message());
    d.memory_bytes = *memory;
    d.accel = j.value("accel", std::string("tcg"));
    d.extra_args = j.value("extra_args", std::vector<std::string>{});
  } catch (const nlohmann::json::exception& e) {
    return Status(Errc::invalid_argument, std::string("VM definition: ") + e.what());
  }
  BNF_TRY(d.validate());
  return d;
}

std::vector<std::string> qemu_command(const VmDefinition& def, const LaunchPaths& paths,
                                      const std::optional<std::string>& incoming) {
  const std::string mem = std::to_string(def.memory_bytes);
  // Flag and value on one line.
  // clang-format off
  std::vector<std::string> argv = {
      "qemu-system-x86_64",
      "-name", def.name + ",debug-threads=on",  // thread names: the migration thread's CPU wait is gauged
      "-accel", def.accel,
      "-m", std::to_string(def.memory_bytes >> 20) + "M",  // a bare number would mean MiB
      "-machine", "pc,memory-backend=ram0",
      "-object", fmt::format("memory-backend-file,id=ram0,size={},mem-path={},share=on", mem, paths.ram_file),
      "-qmp", fmt::format("unix:{},server=on,wait=off", paths.qmp_socket),
      "-serial", "file:" + paths.serial_log,
      "-display", "none",
      "-monitor", "none",
  };
  // clang-format on
  if (incoming) {
    argv.push_back("-incoming");
    argv.push_back(*incoming);
  }
  argv.insert(argv.end(), def.extra_args.begin(), def.extra_args.end());
  return argv;
}

}  // namespace bnf::qemu
