// QEMU's side of every trip before `migrate`: migration events on, bandwidth
// unthrottled, and a downtime limit its first pass cannot meet (see
// source/trip_start.cpp); the return path only where something relays it (a
// direct trip: the destination daemon does); x-ignore-shared in shared mode,
// where QEMU leaves the VM's RAM file to bnf and sends only small blocks and
// device state.
#pragma once

#include "qmp/qmp_client.hpp"

namespace bnf::qemu {

Status prepare_qemu_migration(QmpClient& qmp, bool return_path, bool ignore_shared = false);

}  // namespace bnf::qemu
