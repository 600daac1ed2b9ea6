#include "common/status.hpp"

#include <cerrno>
#include <cstring>

namespace bnf {

std::string errno_text(int err) {
  char buf[128];
  return ::strerror_r(err, buf, sizeof buf);  // GNU: returns the text, in buf or static
}

Status errno_status(std::string_view what, int err) {
  Errc code = Errc::io;
  if (err == ENOSPC || err == EDQUOT) code = Errc::no_space;
  if (err == ENOENT) code = Errc::not_found;
  if (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == ETIMEDOUT) code = Errc::unreachable;
  if (err == EWOULDBLOCK) code = Errc::busy;
  return {code, std::string(what) + ": " + errno_text(err)};
}

}  // namespace bnf
