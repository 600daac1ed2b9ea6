// The VM's main RAM block: bnf starts QEMU with guest RAM as the memory
// backend `ram0` (launch/vm_definition.cpp); only that block's pages are
// filtered, landed and digested, the small ones travel in the stream.
#pragma once

#include <cstdint>
#include <vector>

#include "stream/stream_rewriter.hpp"

namespace bnf::qemu {

inline constexpr const char* kMainBlock = "ram0";

// The stream's block list (RAM migration's start) must hold the main block, `bytes` long.
inline Status check_main_block(const std::vector<RamBlockInfo>& blocks, uint64_t bytes) {
  for (const RamBlockInfo& b : blocks)
    if (b.name == kMainBlock)
      return b.used_length == bytes ? Status::ok() : Status(Errc::mismatch, "main RAM block has an unexpected size");
  return {Errc::protocol, "the stream has no RAM block 'ram0' (VM not started by bnf?)"};
}

}  // namespace bnf::qemu
