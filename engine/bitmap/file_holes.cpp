#include "bitmap/file_holes.hpp"

#include "common/files.hpp"

namespace bnf {

Result<PageBitmap> file_holes(int fd, uint64_t pages) {
  constexpr uint64_t kPage = 4096;
  PageBitmap holes(pages);
  holes.set_all();
  BNF_TRY(for_each_data_run(fd, 0, pages * kPage, [&](uint64_t start, uint64_t end) {
            const uint64_t first = start / kPage;  // a page partly data is data
            holes.clear_range(first, (end + kPage - 1) / kPage - first);
          }).context("find the holes of a RAM file"));
  return holes;
}

}  // namespace bnf
