// The page: the unit bnf filters, digests, sends and lands. Guest RAM and
// images are whole numbers of pages of this size; a manifest or a peer that
// names another size is refused, not mixed.
#pragma once

#include <cstdint>

namespace bnf {

inline constexpr uint64_t kPageSize = 4096;

}  // namespace bnf
