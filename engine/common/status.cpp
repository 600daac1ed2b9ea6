#include "common/status.hpp"

#include <cerrno>
#include <cstring>

namespace bnf {

Status errno_status(std::string_view what, int err) {
  Errc code = Errc::io;
  if (err == ENOSPC || err == EDQUOT) code = Errc::no_space;
  if (err == ENOENT) code = Errc::not_found;
  if (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == ETIMEDOUT) code = Errc::unreachable;
  if (err == EWOULDBLOCK) code = Errc::busy;
  return {code, std::string(what) + ": " + std::strerror(err)};
}

}  // namespace bnf
