// Destination side of a direct trip (a full trip over TCP, see
// docs/stream-mode-design.md "Direct first trips"): the source QEMU's stream
// arrives on a TCP connection of its own (stream_rendezvous.hpp) instead of
// through the source daemon,
// which would add a process hop and copies to every page on the way. Here:
// main-block pages land in the image (digested as they land), the rest of the
// stream goes to our QEMU, and our QEMU's return path goes back to the source
// QEMU, which therefore completes only once ours has loaded everything.
// Before the device state goes on, the image is settled with the source daemon
// on the bnf connection: VM_LANDED (chunk digests of what landed) -> the
// chunks where the source's stopped VM differs, as PAGES -> VM_END (root).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/unique_fd.hpp"
#include "digest/page_digest.hpp"
#include "snapshot/snapshot_store.hpp"
#include "transport/transport.hpp"

namespace bnf::qemu {

// Pages per chunk when the two hosts compare their images at the switchover.
inline constexpr uint64_t kSettleChunkPages = 256;

struct DirectArrival {
  Digest root;              // the source's stopped VM, as settled
  std::string stream_kept;  // the stream our QEMU got: the source's device-state blob
};

// Runs the trip's stream from `stream_fd` to the end (the source QEMU closes it
// once our QEMU's return path said it loaded everything). On failure the stream
// connection is shut, so the source QEMU fails its migration and runs on.
// `connect_qemu` gives our QEMU's incoming socket; it runs on a thread of its
// own from the start, so that pages land while our QEMU starts up.
// `read_ahead`: the stream's first bytes, read from `stream_fd` already.
Result<DirectArrival> receive_direct(transport::Connection& c, SnapshotWriter& w, const PageDigester& h,
                                     const std::function<Result<int>()>& connect_qemu, int stream_fd,
                                     std::vector<std::byte> read_ahead = {});

// The destination's half of the settle (receive_direct runs it when the codec
// reaches the device state): if the image's root is the one VM_EXPECT names,
// VM_LANDED `same` and done; else VM_LANDED with the chunk digests of what
// landed, VM_CHUNKS answered, the pages that differ landed, and the root
// VM_END names must be the image's. Returns that root.
Result<Digest> settle_with_source(transport::Connection& c, SnapshotWriter& w, const PageDigester& h);

}  // namespace bnf::qemu
