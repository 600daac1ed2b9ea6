#include "common/crc32c.hpp"

#include <isa-l/crc.h>

#include <climits>

namespace bnf {

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t len) noexcept {
  // ISA-L takes an int length; feed huge buffers in slices.
  const auto* p = static_cast<const unsigned char*>(data);
  while (len > 0) {
    const size_t n = len > (INT_MAX / 2) ? (INT_MAX / 2) : len;
    crc = crc32_iscsi(const_cast<unsigned char*>(p), static_cast<int>(n), crc);
    p += n;
    len -= n;
  }
  return crc;
}

}  // namespace bnf
