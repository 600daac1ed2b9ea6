#include "vm/trip/return_path.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include "common/files.hpp"
#include "common/wait_readable.hpp"
#include "protocol/control.hpp"

namespace bnf::qemu {

Status forward_return_path(transport::Connection& c, int qemu_fd, uint64_t& bytes) {
  // Our sends first: one that fails while the frame is read would cut the read
  // short with the frame half taken, and the destination's reason (an ERROR
  // frame) would be lost to peer_reason.
  BNF_TRY(c.flush());
  BNF_ASSIGN_OR_RETURN(proto::Frame f, proto::expect_frame(c, proto::FrameType::return_path));
  std::vector<std::byte> buf;
  BNF_TRY(proto::recv_payload(c, f, proto::kMaxReturnPathPayload, buf));
  bytes += buf.size();
  return send_all(qemu_fd, {reinterpret_cast<const char*>(buf.data()), buf.size()}, "source QEMU (return path)");
}

Status ReturnPathPump::until_frame() {
  while (open_ && !c_.has_pending_input()) {
    BNF_ASSIGN_OR_RETURN(Readable r, wait_readable(c_.socket_fd(), qemu_fd_, idle_ms_));
    if (r.second) BNF_TRY(relay_some());
    if (r.first) return Status::ok();
    if (!r.second) return transport::after_quiet_wait({.idle = std::chrono::milliseconds(idle_ms_)}, c_.peer());
  }
  return Status::ok();
}

Status ReturnPathPump::relay_some() {
  std::byte buf[proto::kMaxReturnPathPayload];
  const ssize_t n = ::read(qemu_fd_, buf, sizeof buf);
  if (n < 0 && errno == EINTR) return Status::ok();
  if (n <= 0) {  // our QEMU closed its return path (or its socket broke: the feed will say)
    open_ = false;
    return Status::ok();
  }
  bytes_ += static_cast<uint64_t>(n);
  return proto::send_control(c_, proto::FrameType::return_path, nlohmann::json::object(),
                             std::span<const std::byte>(buf, static_cast<size_t>(n)));
}

}  // namespace bnf::qemu
