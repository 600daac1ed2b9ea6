// libFuzzer target for the frame decoder: header, run descriptors and control
// metadata. Any input must be rejected or accepted without a crash, and
// whatever decodes must stay inside the image.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "protocol/frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr uint64_t kImagePages = 1024;
  if (size < bnf::proto::kHeaderSize) return 0;
  std::array<std::byte, bnf::proto::kHeaderSize> hb{};
  std::memcpy(hb.data(), data, hb.size());
  auto h = bnf::proto::decode_header(hb);
  const std::string_view rest(reinterpret_cast<const char*>(data) + hb.size(), size - hb.size());
  auto runs = bnf::proto::decode_runs(rest, kImagePages);
  if (runs.is_ok()) {
    for (const bnf::PageRun& r : *runs)
      if (r.count == 0 || r.first + r.count > kImagePages) __builtin_trap();
  }
  (void)h;
  return 0;
}
