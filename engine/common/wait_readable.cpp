#include "common/wait_readable.hpp"

#include <poll.h>

#include <cerrno>

namespace bnf {

Result<Readable> wait_readable(int first, int second, int timeout_ms) {
  while (true) {
    pollfd p[2] = {{first, POLLIN, 0}, {second, POLLIN, 0}};
    const int rc = ::poll(p, 2, timeout_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return errno_status("poll", errno);
    return Readable{p[0].revents != 0, p[1].revents != 0};
  }
}

}  // namespace bnf
