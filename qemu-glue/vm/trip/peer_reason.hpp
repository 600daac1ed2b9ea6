// Why a trip failed, as the operator needs to hear it: a destination that
// failed on purpose (out of space, its QEMU died) sends an ERROR frame before
// it closes, and its reason beats a broken connection or QEMU's socket error.
#pragma once

#include "common/status.hpp"
#include "transport/transport.hpp"

namespace bnf::qemu {

// `broke`: what failed here. `by_qemu`: it was our QEMU's migration (its
// socket to the destination), not the bnf connection `c`; then `c` says
// whether the destination is gone.
Status peer_reason(transport::Connection& c, const Status& broke, bool by_qemu = false);

}  // namespace bnf::qemu
