// Wire protocol v5 framing. Every frame is a 32-byte header, then `meta_len`
// bytes of metadata (run descriptors or a JSON control message), then
// `payload_len` bytes of bulk data (page contents, a digest table). Header,
// metadata and payload each carry a CRC32C. See docs/wire-protocol.md.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "bitmap/page_bitmap.hpp"
#include "common/status.hpp"

namespace bnf::proto {

inline constexpr uint32_t kMagic = 0x31464E42;  // "BNF1" little-endian
inline constexpr uint32_t kVersion = 5;
inline constexpr size_t kHeaderSize = 32;
inline constexpr uint32_t kMaxMetaLen = 1U << 20;               // 1 MiB of metadata at most (run descriptors)
inline constexpr uint32_t kMaxPeerMetaLen = 512;                // PEER_*: read before the peer is authenticated
inline constexpr uint32_t kMaxErrorMetaLen = 4U << 10;          // ERROR: a one-line reason and a code
inline constexpr uint32_t kMaxControlMetaLen = 64U << 10;       // HELLO, ACCEPT, BEGIN, COMMIT, ... (JSON)
inline constexpr uint32_t kMaxVmHelloMetaLen = 256U << 10;      // VM_HELLO: the VM definition with QEMU arguments
inline constexpr uint64_t kMaxPagesPayload = 16ULL << 20;       // 16 MiB of pages per frame at most
inline constexpr uint64_t kMaxStreamPayload = 4ULL << 20;       // 4 MiB of QEMU stream per STREAM frame at most
inline constexpr uint64_t kMaxReturnPathPayload = 64ULL << 10;  // per RETURN_PATH frame
inline constexpr uint64_t kMaxRunsPerFrame = kMaxMetaLen / 16;

enum class FrameType : uint8_t {
  hello = 1,            // control: sender introduces itself and the image
  accept = 2,           // control: receiver's answer, with the base it holds
  attach = 3,           // data: a data connection joins a session
  table_request = 4,    // control: sender asks for the base's digest table
  table = 5,            // control: payload is the digest table
  begin = 6,            // control: sender fixes the mode (full / incremental)
  ready = 7,            // control: receiver is prepared to land pages
  pages = 8,            // data: run descriptors + page contents
  zeros = 9,            // data: run descriptors of pages that become zero
  barrier = 10,         // data: end of a round on this stream, with counts
  commit = 11,          // control: all rounds sent; expected digest root
  committed = 12,       // control: receiver committed a new epoch
  abort = 13,           // either: stop, roll back
  error = 14,           // either: failure with a reason
  vm_hello = 15,        // migration: source introduces a VM and its arrival record
  vm_accept = 16,       // migration: destination's mode, lineage, epoch and key
  stream = 17,          // migration: payload is QEMU stream bytes for the destination QEMU
  vm_end = 18,          // migration: the source stream ended; departure digest root
  vm_done = 19,         // migration: destination QEMU loaded the VM and runs it
  vm_switch = 20,       // migration: device state follows; the image must be complete and proven first
  vm_landed = 21,       // direct migration: QEMU's RAM landed; payload = chunk digests of the image
  vm_chunks = 22,       // direct migration: chunks that differ; the answer carries their page digests
  vm_stream = 23,       // direct migration: opens the source QEMU's own stream connection (raw stream follows)
  peer_hello = 24,      // every connection's first frame: the connecting host's nonce
  peer_challenge = 25,  // the listening host's nonce and its proof that it holds the peer key
  peer_proof = 26,      // the connecting host's proof; the connection's own first frame follows
  return_path = 27,     // relayed migration: the destination QEMU's return-path bytes, for the source QEMU
  vm_expect = 28,       // direct migration: the stopped VM's digest root, sent as the source has it
};
[[nodiscard]] bool is_known_type(uint8_t t) noexcept;
[[nodiscard]] const char* type_name(FrameType t) noexcept;
// The most metadata a frame of type `t` may carry: run descriptors and
// VM_CHUNKS' chunk list kMaxMetaLen, VM_HELLO kMaxVmHelloMetaLen, ERROR
// kMaxErrorMetaLen, PEER_* kMaxPeerMetaLen, any other JSON control message
// kMaxControlMetaLen. decode_header enforces it, so no frame's metadata is
// allocated past it.
[[nodiscard]] uint32_t max_meta_len(FrameType t) noexcept;

struct FrameHeader {
  FrameType type{};
  uint8_t flags = 0;
  uint32_t meta_len = 0;
  uint32_t meta_crc = 0;
  uint64_t payload_len = 0;
  uint32_t payload_crc = 0;
};

using HeaderBytes = std::array<std::byte, kHeaderSize>;

HeaderBytes encode_header(const FrameHeader& h);
// Strict: magic, header CRC, known type, zero reserved bits, meta_len within its type's limit.
Result<FrameHeader> decode_header(std::span<const std::byte, kHeaderSize> bytes);

// Page run descriptors (16 bytes each: u64 first page, u64 page count).
std::string encode_runs(std::span<const PageRun> runs);
// Strict: sorted, non-overlapping, non-empty runs inside an image of `image_pages`
// pages; at most kMaxRunsPerFrame runs; returns the total page count.
Result<std::vector<PageRun>> decode_runs(std::string_view meta, uint64_t image_pages);

}  // namespace bnf::proto
