#include "digest/hole_digests.hpp"

#include "bitmap/file_holes.hpp"

namespace bnf {

PageBitmap digest_holes(DigestTable& t, const PageDigester& h, int fd, PageBitmap& to_read) {
  if (fd < 0) return PageBitmap(to_read.size());
  Result<PageBitmap> holes = file_holes(fd, to_read.size());
  if (!holes.is_ok()) return PageBitmap(to_read.size());
  const Digest zero = h.zero_digest();
  for (uint64_t p = holes->find_next_set(0); p != PageBitmap::npos; p = holes->find_next_set(p + 1)) t[p] = zero;
  (void)to_read.subtract(*holes);  // same size
  return std::move(*holes);
}

}  // namespace bnf
