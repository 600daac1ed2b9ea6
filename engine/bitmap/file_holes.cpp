#include "bitmap/file_holes.hpp"

#include "common/files.hpp"
#include "common/page.hpp"

namespace bnf {

Result<PageBitmap> file_holes(int fd, uint64_t pages) {
  PageBitmap holes(pages);
  holes.set_all();
  BNF_TRY(for_each_data_run(fd, 0, pages * kPageSize, [&](uint64_t start, uint64_t end) {
            const uint64_t first = start / kPageSize;  // a page partly data is data
            holes.clear_range(first, (end + kPageSize - 1) / kPageSize - first);
          }).context("find the holes of a RAM file"));
  return holes;
}

}  // namespace bnf
