#include "vm/control_ops.hpp"

namespace bnf::qemu {

using nlohmann::json;

namespace {
MigrateOptions migrate_options(const json& req) {
  MigrateOptions o;
  o.downtime_limit_ms = req.value("downtime_limit_ms", 300);
  const std::string check = req.value("switchover_check", std::string("auto"));
  if (check != "auto") o.switchover_check = check != "off";
  o.check_all_before_resume = check != "written";
  o.direct = !req.value("relay", false);
  const std::string track = req.value("write_tracker", std::string("auto"));
  o.track_writes = track == "on"    ? MigrateOptions::TrackWrites::on
                   : track == "off" ? MigrateOptions::TrackWrites::off
                                    : MigrateOptions::TrackWrites::automatic;
  return o;
}
}  // namespace

Result<json> handle_control(VmManager& vms, const json& req, const ProgressFn& progress) {
  const std::string op = req.value("op", std::string());
  const std::string name = req.value("name", std::string());
  if (op == "vm.create") {
    if (!req.contains("definition")) return Status(Errc::invalid_argument, "vm.create needs a definition");
    BNF_ASSIGN_OR_RETURN(VmDefinition def, VmDefinition::from_json(req["definition"]));
    return vms.create(def);
  }
  if (op == "vm.start") return vms.start(name);
  if (op == "vm.stop") return vms.stop(name);
  if (op == "restore") return vms.restore(name);
  if (op == "vm.list") return vms.list();
  if (op == "vm.status") return vms.status(name);
  if (op == "migrate") {
    BNF_ASSIGN_OR_RETURN(Endpoint to, parse_endpoint(req.value("to", std::string())));
    BNF_ASSIGN_OR_RETURN(MigrationReport r, vms.migrate(name, to, migrate_options(req), progress));
    return r.to_json();
  }
  return Status(Errc::invalid_argument, "unknown control operation '" + op + "'");
}

}  // namespace bnf::qemu
