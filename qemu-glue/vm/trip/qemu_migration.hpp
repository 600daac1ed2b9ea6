// QEMU's side of every trip before `migrate`: migration events on, bandwidth
// unthrottled, and a downtime limit its first pass cannot meet (see
// migration_source.cpp); the return path only where something relays it (a
// direct trip: the destination daemon does).
#pragma once

#include "qmp/qmp_client.hpp"

namespace bnf::qemu {

Status prepare_qemu_migration(QmpClient& qmp, bool return_path);

}  // namespace bnf::qemu
