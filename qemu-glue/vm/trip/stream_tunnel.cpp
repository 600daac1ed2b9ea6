#include "vm/trip/stream_tunnel.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "common/files.hpp"
#include "common/wait_readable.hpp"
#include "protocol/control.hpp"

namespace bnf::qemu {

namespace {
// One secure record's worth per frame: the receiver decrypts it in place.
constexpr size_t kChunk = 256U << 10;
}  // namespace

Result<std::unique_ptr<StreamTunnel>> StreamTunnel::start(std::unique_ptr<transport::Connection> c) {
  transport::Connection& ref = *c;
  return launch(std::unique_ptr<StreamTunnel>(new StreamTunnel(std::move(c), ref)));
}

Result<std::unique_ptr<StreamTunnel>> StreamTunnel::start(transport::Connection& c) {
  return launch(std::unique_ptr<StreamTunnel>(new StreamTunnel(nullptr, c)));
}

Result<std::unique_ptr<StreamTunnel>> StreamTunnel::launch(std::unique_ptr<StreamTunnel> t) {
  if (!t->c_.capabilities().pollable)
    return Status(Errc::invalid_argument, "this transport cannot carry a QEMU stream");
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    return errno_status("socketpair for QEMU's stream", errno);
  t->tunnel_end_.reset(fds[0]);
  t->local_end_.reset(fds[1]);
  StreamTunnel* self = t.get();
  t->thread_ = std::thread([self] {
    self->outcome_ = self->relay();
    // A relay that failed leaves the local side no silent pipe: its writes fail.
    ::shutdown(self->tunnel_end_.get(), SHUT_RDWR);
  });
  return t;
}

StreamTunnel::~StreamTunnel() {
  if (thread_.joinable()) {
    c_.shutdown();
    ::shutdown(tunnel_end_.get(), SHUT_RDWR);
    thread_.join();
  }
}

Status StreamTunnel::wait() {
  if (thread_.joinable()) thread_.join();
  return outcome_;
}

// Both directions in one thread: a Connection is never used by two at once.
Status StreamTunnel::relay() {
  const int fd = tunnel_end_.get();
  bool local_open = true;   // the local side may still write
  bool remote_open = true;  // the peer may still send
  bool local_gone = false;  // the local side stopped reading: what still comes is dropped
  std::vector<std::byte> buf(kChunk);
  std::vector<std::byte> payload;
  while (local_open || remote_open) {
    bool remote_ready = remote_open && c_.has_pending_input();
    bool local_ready = false;
    if (!remote_ready) {
      BNF_ASSIGN_OR_RETURN(Readable r, wait_readable(remote_open ? c_.socket_fd() : -1, local_open ? fd : -1));
      remote_ready = r.first;
      local_ready = r.second;
    }
    if (local_ready) {
      const ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      const size_t got = n > 0 ? static_cast<size_t>(n) : 0;
      local_open = got > 0;
      BNF_TRY(proto::send_control(c_, proto::FrameType::stream, nlohmann::json::object(),
                                  std::span<const std::byte>(buf.data(), got)));
    }
    if (remote_ready) {
      BNF_ASSIGN_OR_RETURN(proto::Frame f, proto::expect_frame(c_, proto::FrameType::stream));
      BNF_TRY(proto::recv_payload(c_, f, proto::kMaxStreamPayload, payload));
      if (payload.empty()) {
        remote_open = false;
        ::shutdown(fd, SHUT_WR);
      } else if (!local_gone) {
        local_gone =
            !send_all(fd, {reinterpret_cast<const char*>(payload.data()), payload.size()}, "QEMU stream").is_ok();
      }
    }
  }
  return Status::ok();
}

}  // namespace bnf::qemu
