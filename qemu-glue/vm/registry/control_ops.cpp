#include "vm/registry/control_ops.hpp"

#include <array>

#include "protocol/control.hpp"

namespace bnf::qemu {

using nlohmann::json;

namespace {

// A named option's value, parsed with its table; missing: the table's first.
template <class E, size_t N>
Result<E> choice(const json& req, const char* key, const std::array<Choice<E>, N>& table) {
  BNF_ASSIGN_OR_RETURN(std::string v, proto::optional_field<std::string>(req, key, std::string(table[0].name)));
  return parse_choice(table, key, v);
}

Result<MigrateOptions> migrate_options(const json& req) {
  MigrateOptions o;
  BNF_ASSIGN_OR_RETURN(o.downtime_limit_ms, proto::optional_field<int>(req, "downtime_limit_ms", 300));
  if (o.downtime_limit_ms < 1 || o.downtime_limit_ms > 60000)
    return Status(Errc::invalid_argument, "downtime_limit_ms must be 1..60000");
  BNF_ASSIGN_OR_RETURN(SwitchoverCheck check, choice(req, "switchover_check", kSwitchoverChecks));
  apply_switchover_check(check, o);
  BNF_ASSIGN_OR_RETURN(bool relay, proto::optional_field<bool>(req, "relay", false));
  o.direct = !relay;
  BNF_ASSIGN_OR_RETURN(o.track_writes, choice(req, "write_tracker", kWriteTrackers));
  BNF_ASSIGN_OR_RETURN(o.ram_mode, choice(req, "mode", kRamModes));
  BNF_ASSIGN_OR_RETURN(o.max_rounds, proto::optional_field<unsigned>(req, "max_rounds", 30U));
  if (o.max_rounds < 1 || o.max_rounds > 1000) return Status(Errc::invalid_argument, "max_rounds must be 1..1000");
  return o;
}

}  // namespace

Result<json> handle_control(VmManager& vms, const json& req, const ProgressFn& progress) {
  BNF_ASSIGN_OR_RETURN(std::string op, proto::optional_field<std::string>(req, "op", ""));
  BNF_ASSIGN_OR_RETURN(std::string name, proto::optional_field<std::string>(req, "name", ""));
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
    BNF_ASSIGN_OR_RETURN(std::string to_text, proto::optional_field<std::string>(req, "to", ""));
    BNF_ASSIGN_OR_RETURN(Endpoint to, parse_endpoint(to_text));
    BNF_ASSIGN_OR_RETURN(MigrateOptions o, migrate_options(req));
    BNF_ASSIGN_OR_RETURN(MigrationReport r, vms.migrate(name, to, o, progress));
    return r.to_json();
  }
  return Status(Errc::invalid_argument, "unknown control operation '" + op + "'");
}

}  // namespace bnf::qemu
