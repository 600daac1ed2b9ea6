// The pages of a file that are holes (SEEK_HOLE): they read as zeros, and on
// tmpfs reading one through a shared mapping would allocate it. A VM's RAM
// file has one wherever the guest never wrote (or a balloon gave memory back).
#pragma once

#include <cstdint>

#include "bitmap/page_bitmap.hpp"
#include "common/status.hpp"

namespace bnf {

// Holes among the first `pages` 4 KiB pages of `fd` (a page partly data is data).
Result<PageBitmap> file_holes(int fd, uint64_t pages);

}  // namespace bnf
