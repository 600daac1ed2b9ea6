#include "protocol/frame.hpp"

#include <cstring>
#include <string>

#include "common/crc32c.hpp"

namespace bnf::proto {

namespace {
template <typename T>
void put(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof v);
}
template <typename T>
T get(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
Status bad(const std::string& why) { return {Errc::protocol, "bad frame: " + why}; }
}  // namespace

bool is_known_type(uint8_t t) noexcept {
  return t >= static_cast<uint8_t>(FrameType::hello) && t <= static_cast<uint8_t>(FrameType::vm_expect);
}

const char* type_name(FrameType t) noexcept {
  switch (t) {
    case FrameType::hello: return "HELLO";
    case FrameType::accept: return "ACCEPT";
    case FrameType::attach: return "ATTACH";
    case FrameType::table_request: return "TABLE_REQUEST";
    case FrameType::table: return "TABLE";
    case FrameType::begin: return "BEGIN";
    case FrameType::ready: return "READY";
    case FrameType::pages: return "PAGES";
    case FrameType::zeros: return "ZEROS";
    case FrameType::barrier: return "BARRIER";
    case FrameType::commit: return "COMMIT";
    case FrameType::committed: return "COMMITTED";
    case FrameType::abort: return "ABORT";
    case FrameType::error: return "ERROR";
    case FrameType::vm_hello: return "VM_HELLO";
    case FrameType::vm_accept: return "VM_ACCEPT";
    case FrameType::stream: return "STREAM";
    case FrameType::vm_end: return "VM_END";
    case FrameType::vm_done: return "VM_DONE";
    case FrameType::vm_switch: return "VM_SWITCH";
    case FrameType::vm_landed: return "VM_LANDED";
    case FrameType::vm_chunks: return "VM_CHUNKS";
    case FrameType::vm_stream: return "VM_STREAM";
    case FrameType::peer_hello: return "PEER_HELLO";
    case FrameType::peer_challenge: return "PEER_CHALLENGE";
    case FrameType::peer_proof: return "PEER_PROOF";
    case FrameType::return_path: return "RETURN_PATH";
    case FrameType::vm_expect: return "VM_EXPECT";
  }
  return "UNKNOWN";
}

uint32_t max_meta_len(FrameType t) noexcept {
  switch (t) {
    case FrameType::pages:
    case FrameType::zeros:
    case FrameType::vm_chunks: return kMaxMetaLen;
    case FrameType::vm_hello: return kMaxVmHelloMetaLen;
    case FrameType::error: return kMaxErrorMetaLen;
    case FrameType::peer_hello:
    case FrameType::peer_challenge:
    case FrameType::peer_proof: return kMaxPeerMetaLen;
    default: return kMaxControlMetaLen;
  }
}

HeaderBytes encode_header(const FrameHeader& h) {
  HeaderBytes b{};
  put<uint32_t>(&b[0], kMagic);
  b[4] = static_cast<std::byte>(h.type);
  b[5] = static_cast<std::byte>(h.flags);
  put<uint16_t>(&b[6], 0);
  put<uint32_t>(&b[8], h.meta_len);
  put<uint32_t>(&b[12], h.meta_crc);
  put<uint64_t>(&b[16], h.payload_len);
  put<uint32_t>(&b[24], h.payload_crc);
  put<uint32_t>(&b[28], crc32c(b.data(), 28));
  return b;
}

Result<FrameHeader> decode_header(std::span<const std::byte, kHeaderSize> b) {
  if (get<uint32_t>(&b[0]) != kMagic) return bad("bad magic (not a bnf peer?)");
  if (get<uint32_t>(&b[28]) != crc32c(b.data(), 28)) return Status(Errc::corrupt, "bad frame: header CRC mismatch");
  const auto type = static_cast<uint8_t>(b[4]);
  if (!is_known_type(type)) return bad("unknown frame type " + std::to_string(type));
  if (static_cast<uint8_t>(b[5]) != 0 || get<uint16_t>(&b[6]) != 0) return bad("reserved bits set");
  FrameHeader h;
  h.type = static_cast<FrameType>(type);
  h.meta_len = get<uint32_t>(&b[8]);
  h.meta_crc = get<uint32_t>(&b[12]);
  h.payload_len = get<uint64_t>(&b[16]);
  h.payload_crc = get<uint32_t>(&b[24]);
  if (h.meta_len > max_meta_len(h.type))
    return bad(std::string(type_name(h.type)) + " metadata length " + std::to_string(h.meta_len) + " over its limit " +
               std::to_string(max_meta_len(h.type)));
  return h;
}

std::string encode_runs(std::span<const PageRun> runs) {
  std::string out(runs.size() * 16, '\0');
  for (size_t i = 0; i < runs.size(); ++i) {
    std::memcpy(out.data() + i * 16, &runs[i].first, 8);
    std::memcpy(out.data() + i * 16 + 8, &runs[i].count, 8);
  }
  return out;
}

Result<std::vector<PageRun>> decode_runs(std::string_view meta, uint64_t image_pages) {
  if (meta.empty() || meta.size() % 16 != 0) return bad("run list length " + std::to_string(meta.size()));
  const size_t n = meta.size() / 16;
  if (n > kMaxRunsPerFrame) return bad("too many runs");
  std::vector<PageRun> runs(n);
  uint64_t next_free = 0;
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(&runs[i].first, meta.data() + i * 16, 8);
    std::memcpy(&runs[i].count, meta.data() + i * 16 + 8, 8);
    const PageRun& r = runs[i];
    if (r.count == 0) return bad("empty run");
    if (r.first >= image_pages || r.count > image_pages - r.first)
      return bad("run [" + std::to_string(r.first) + "+" + std::to_string(r.count) + ") past the image end (" +
                 std::to_string(image_pages) + " pages)");
    if (i > 0 && r.first < next_free) return bad("runs overlap or are out of order");
    next_free = r.first + r.count;
  }
  return runs;
}

}  // namespace bnf::proto
