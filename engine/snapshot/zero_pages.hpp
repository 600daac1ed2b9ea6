// Gives a retained snapshot's zero pages back to the host. QEMU's migration
// pass reads every page of the VM's RAM file, and on tmpfs reading a hole
// through QEMU's shared mapping allocates it: a departed VM's snapshot takes
// its whole RAM size, untouched memory included. A zero page punched out
// reads the same, so nothing that uses the snapshot sees a difference.
#pragma once

#include <cstdint>

#include "common/status.hpp"
#include "digest/page_digest.hpp"

namespace bnf {

// Punches out the pages of `fd` that `table` says are zero (`zero`: the zero
// page's digest) and that read as zeros; returns the bytes the file gave back.
Result<uint64_t> release_zero_pages(int fd, const DigestTable& table, const Digest& zero, uint32_t page_size);

}  // namespace bnf
