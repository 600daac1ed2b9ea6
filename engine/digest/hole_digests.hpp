// A file's holes are zero pages: their digests are known without reading
// them, and on tmpfs a read through a shared mapping would allocate each.
#pragma once

#include "bitmap/page_bitmap.hpp"
#include "digest/page_digest.hpp"

namespace bnf {

// Gives every hole of `fd` (4 KiB pages) the zero page's digest in `t` and
// takes it out of `to_read`; returns the holes. None when `fd` < 0 or the
// holes cannot be listed: then every page is read, as any other.
PageBitmap digest_holes(DigestTable& t, const PageDigester& h, int fd, PageBitmap& to_read);

}  // namespace bnf
