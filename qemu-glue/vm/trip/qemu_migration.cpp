#include "vm/trip/qemu_migration.hpp"

#include "vm/trip/migration_report.hpp"

namespace bnf::qemu {

Status prepare_qemu_migration(QmpClient& qmp, bool return_path, bool ignore_shared) {
  // Every capability is set each time: a QEMU keeps them from a failed trip.
  const nlohmann::json caps = nlohmann::json::array({{{"capability", "events"}, {"state", true}},
                                                     {{"capability", "return-path"}, {"state", return_path}},
                                                     {{"capability", "x-ignore-shared"}, {"state", ignore_shared}}});
  BNF_TRY(qmp.execute("migrate-set-capabilities", {{"capabilities", caps}}).status());
  return qmp
      .execute("migrate-set-parameters", {{"max-bandwidth", 1ULL << 40}, {"downtime-limit", kFirstPassDowntimeMs}})
      .status();
}

}  // namespace bnf::qemu
