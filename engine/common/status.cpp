#include "common/status.hpp"

#include <cerrno>
#include <cstring>

namespace bnf {

std::string_view errc_name(Errc c) noexcept {
  switch (c) {
    case Errc::ok: return "ok";
    case Errc::invalid_argument: return "invalid-argument";
    case Errc::io: return "io";
    case Errc::protocol: return "protocol";
    case Errc::corrupt: return "corrupt";
    case Errc::not_found: return "not-found";
    case Errc::busy: return "busy";
    case Errc::mismatch: return "mismatch";
    case Errc::unreachable: return "unreachable";
    case Errc::connection_lost: return "connection-lost";
    case Errc::denied: return "denied";
    case Errc::no_space: return "no-space";
    case Errc::version: return "version";
    case Errc::cancelled: return "cancelled";
    case Errc::internal: return "internal";
  }
  return "unknown";
}

Status errno_status(std::string_view what, int err) {
  Errc code = Errc::io;
  if (err == ENOSPC || err == EDQUOT) code = Errc::no_space;
  if (err == ENOENT) code = Errc::not_found;
  if (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == ETIMEDOUT)
    code = Errc::unreachable;
  if (err == EWOULDBLOCK) code = Errc::busy;
  return {code, std::string(what) + ": " + std::strerror(err)};
}

}  // namespace bnf
