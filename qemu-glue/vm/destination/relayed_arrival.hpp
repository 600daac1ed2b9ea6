// A relayed arrival: the source daemon sends the pages its filter kept as
// PAGES/ZEROS frames, which land in the image (engine/push/landing), and the
// rest of QEMU's stream as STREAM frames, which go to our QEMU; what our QEMU
// says on its return path goes back between frames.
#pragma once

#include "digest/page_digest.hpp"
#include "snapshot/snapshot_store.hpp"
#include "transport/transport.hpp"

namespace bnf::qemu {

// Frames until VM_END; checks the base at VM_SWITCH (an incremental trip's
// retained snapshot must still be what its table says). Returns VM_END's root.
Result<Digest> receive_relayed(transport::Connection& c, SnapshotWriter& w, const PageDigester& h, int qemu_fd,
                               unsigned peer_timeout_ms);

}  // namespace bnf::qemu
