// QEMU's return path in a relayed trip. The source QEMU migrates into this
// daemon's socket with `return-path` on: it ends its stream only once the
// destination QEMU said, on that path, that it loaded everything (MIG_RP_MSG_SHUT),
// and fails its migration (resuming the VM itself) if the destination says it
// failed. The destination daemon reads what its QEMU writes back on the stream
// socket and sends it as RETURN_PATH frames between the frames it receives; the
// source daemon writes those bytes into its QEMU's socket while it waits for
// the stream. Both sides wait on two descriptors in one thread, so a
// Connection is never used by two threads at once.
#pragma once

#include <cstdint>

#include "common/status.hpp"
#include "transport/transport.hpp"

namespace bnf::qemu {

// Source: one frame from the destination, which must be RETURN_PATH; its bytes
// go to our QEMU. An ERROR frame fails with the destination's reason.
[[nodiscard]] Status forward_return_path(transport::Connection& c, int qemu_fd, uint64_t& bytes);

// Destination: relays our QEMU's return path while waiting for the source.
class ReturnPathPump {
 public:
  // Inactive when `c` has no socket to wait on. `idle_ms`: how long the
  // source may send nothing (negative: no limit).
  ReturnPathPump(transport::Connection& c, int qemu_fd, int idle_ms = -1)
      : c_(c), qemu_fd_(qemu_fd), idle_ms_(idle_ms), open_(c.capabilities().pollable) {}
  // Returns once the source's next frame is waiting on `c`, sending whatever
  // our QEMU writes on its return path meanwhile; fails once the source sent
  // nothing for `idle_ms`.
  [[nodiscard]] Status until_frame();
  [[nodiscard]] uint64_t bytes() const { return bytes_; }

 private:
  Status relay_some();
  transport::Connection& c_;
  int qemu_fd_;
  int idle_ms_;
  bool open_;  // our QEMU may still write on its return path
  uint64_t bytes_ = 0;
};

}  // namespace bnf::qemu
