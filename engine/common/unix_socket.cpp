#include "common/unix_socket.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
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

// Binds and listens on `staged` (in a folder only this user can enter), then
// gives the socket file its final mode and group.
Result<UniqueFd> listen_staged(const std::string& staged, int backlog, SocketFileAccess access) {
  BNF_ASSIGN_OR_RETURN(sockaddr_un a, address(staged));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno_status("socket", errno);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 || ::listen(fd.get(), backlog) != 0)
    return errno_status("listen on " + staged, errno);
  if (access.group != SocketFileAccess::kKeepGroup &&
      ::chown(staged.c_str(), static_cast<uid_t>(-1), access.group) != 0)
    return errno_status("give socket " + staged + " its group", errno);
  if (::chmod(staged.c_str(), access.mode) != 0) return errno_status("set the mode of socket " + staged, errno);
  return fd;
}
}  // namespace

Result<UniqueFd> unix_listen(const std::string& path, int backlog, SocketFileAccess access) {
  BNF_TRY(address(path).status());
  const std::string parent = std::filesystem::path(path).parent_path().string();
  std::string folder = (parent.empty() ? "." : parent) + "/.bnfXXXXXX";
  if (::mkdtemp(folder.data()) == nullptr) return errno_status("create a private folder beside " + path, errno);
  const std::string staged = folder + "/s";
  auto fd = listen_staged(staged, backlog, access);
  if (fd.is_ok() && ::rename(staged.c_str(), path.c_str()) != 0) fd = errno_status("move socket to " + path, errno);
  ::unlink(staged.c_str());  // gone already once renamed
  ::rmdir(folder.c_str());
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
