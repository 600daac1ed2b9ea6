#include "bitmap/file_holes.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace bnf {

Result<PageBitmap> file_holes(int fd, uint64_t pages) {
  constexpr uint64_t kPage = 4096;
  PageBitmap holes(pages);
  const uint64_t size = pages * kPage;
  for (uint64_t at = 0; at < size;) {
    off_t hole = ::lseek(fd, static_cast<off_t>(at), SEEK_HOLE);
    if (hole < 0) return Status(Errc::io, std::string("find the holes of a RAM file: ") + std::strerror(errno));
    if (static_cast<uint64_t>(hole) >= size) break;
    const off_t data = ::lseek(fd, hole, SEEK_DATA);
    if (data < 0 && errno != ENXIO)  // ENXIO: holes to the end
      return Status(Errc::io, std::string("find the holes of a RAM file: ") + std::strerror(errno));
    const uint64_t end = data < 0 ? size : std::min<uint64_t>(size, static_cast<uint64_t>(data));
    const uint64_t first = (static_cast<uint64_t>(hole) + kPage - 1) / kPage;  // whole pages only
    const uint64_t last = end / kPage;
    if (last > first) holes.set_range(first, last - first);
    at = end;
  }
  return holes;
}

}  // namespace bnf
