// The source's two exchanges with the destination daemon that frame a trip:
// the agreement before it (VM_HELLO -> VM_ACCEPT: full or incremental, the
// digest key, direct or relayed) and the switch over at its end (VM_END ->
// VM_DONE: the VM runs there with exactly the image sent).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "digest/page_digest.hpp"
#include "launch/vm_definition.hpp"
#include "snapshot/snapshot_store.hpp"
#include "transport/transport.hpp"
#include "vm/trip/migration_report.hpp"

namespace bnf::qemu {

// The agreement: how this trip goes, and against which base.
struct Agreement {
  MigrationReport rep;  // mode, lineage, epoch and fallback filled in
  DigestKey key{};
  std::optional<DigestTable> base;
  uint64_t base_epoch = 0;  // the base's (our arrival record's) epoch, when there is a base
  bool direct = false;      // the destination takes our QEMU's own stream (direct trip)
  bool shared = false;      // the destination takes shared mode (bnf sends the RAM file's pages itself)
};

// Sends our arrival record (the image the VM had when it came here); the
// destination answers full or incremental against its retained snapshot.
// `force_full` (not empty) asks for a full trip and says why. `stream_token`
// (not empty) offers a direct trip with QEMU's stream on the connection that
// VM_STREAM names by it. `offer_shared`: offer shared mode ("ram": "shared").
Result<Agreement> agree(transport::Connection& c, SnapshotStore& store, const VmDefinition& def,
                        const std::string& force_full, const std::string& stream_token, bool offer_shared);

// Tells the destination the image is complete (root `root`); its answer,
// VM_DONE, says the VM runs there with exactly that image.
Result<nlohmann::json> await_arrival(transport::Connection& c, const Digest& root);

}  // namespace bnf::qemu
