// CRC32C (Castagnoli) via ISA-L's crc32_iscsi: on every frame header and payload.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bnf {

// Continues `crc` over `len` bytes; start with crc32c_init and finish with crc32c_final.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t len) noexcept;
inline constexpr uint32_t crc32c_init = 0xFFFFFFFFu;
inline uint32_t crc32c_final(uint32_t crc) noexcept { return crc ^ 0xFFFFFFFFu; }
inline uint32_t crc32c(const void* data, size_t len) noexcept {
  return crc32c_final(crc32c_extend(crc32c_init, data, len));
}

}  // namespace bnf
