#include "transport/plain/plain_connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "common/files.hpp"
#include "transport/tcp/socket_util.hpp"

namespace bnf::transport {

Status PlainConnection::post(std::span<const ConstBuffer> parts) {
  for (const ConstBuffer& p : parts) {
    BNF_TRY(send_all(fd_, {reinterpret_cast<const char*>(p.data), p.size}, "send to " + peer()));
    stats_.bytes_sent += p.size;
    ++stats_.send_ops;
  }
  return Status::ok();
}

// Until the socket has bytes (or its end), within the receive limits.
Status PlainConnection::wait_readable() {
  while (const auto wait = next_receive_wait(limits_)) {
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(wait->count()));
    if (rc > 0) return Status::ok();
    if (rc < 0 && errno != EINTR) return errno_status("poll", errno);
    if (rc == 0) BNF_TRY(after_quiet_wait(limits_, peer()));
  }
  return Status::ok();
}

Status PlainConnection::recv(std::span<std::byte> dst) {
  size_t off = 0;
  while (off < dst.size()) {
    BNF_TRY(wait_readable());
    const ssize_t n = ::recv(fd_, dst.data() + off, dst.size() - off, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(Errc::connection_lost, errno_status("connection to " + peer() + " lost", errno).message());
    if (n == 0) return Status(Errc::connection_lost, "connection to " + peer() + " lost: the peer closed it");
    off += static_cast<size_t>(n);
  }
  stats_.bytes_received += dst.size();
  return Status::ok();
}

Status PlainConnection::recv_scatter(std::span<const MutableBuffer> parts) {
  for (const MutableBuffer& p : parts) BNF_TRY(recv({p.data, p.size}));
  return Status::ok();
}

void PlainConnection::shutdown() noexcept { ::shutdown(fd_, SHUT_RDWR); }

std::string PlainConnection::peer() const { return peer_name(fd_); }

}  // namespace bnf::transport
