#include "common/unix_socket.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

namespace bnf {

namespace {
Result<sockaddr_un> address(const std::string& path) {
  sockaddr_un a{};
  if (path.size() >= sizeof a.sun_path) return Status(Errc::invalid_argument, "socket path too long: " + path);
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}
}  // namespace

Result<UniqueFd> unix_listen(const std::string& path, int backlog) {
  BNF_ASSIGN_OR_RETURN(sockaddr_un a, address(path));
  std::error_code ec;
  std::filesystem::remove(path, ec);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno_status("socket", errno);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 || ::listen(fd.get(), backlog) != 0)
    return errno_status("listen on " + path, errno);
  return fd;
}

Result<UniqueFd> unix_connect(const std::string& path, std::chrono::milliseconds retry_for) {
  BNF_ASSIGN_OR_RETURN(sockaddr_un a, address(path));
  const auto deadline = std::chrono::steady_clock::now() + retry_for;
  while (true) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return errno_status("socket", errno);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) return fd;
    if (std::chrono::steady_clock::now() >= deadline) return errno_status("connect to " + path, errno);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace bnf
