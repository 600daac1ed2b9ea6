#include "vm/trip/peer_reason.hpp"

#include "protocol/control.hpp"

namespace bnf::qemu {

Status peer_reason(transport::Connection& c, const Status& broke, bool by_qemu) {
  auto destination_failed = [](const Status& s) {
    return Status::from_peer(s.code(), s.peer_reason(), "destination failed: ");
  };
  if (broke.from_peer()) return destination_failed(broke);
  if (broke.code() != Errc::connection_lost) return broke;
  auto f = proto::recv_frame(c);  // still readable after a failed send
  if (f.is_ok()) return broke;
  if (f.status().from_peer()) return destination_failed(f.status());
  if (by_qemu) return Status(Errc::connection_lost, f.status().message() + " (" + broke.message() + ")");
  return broke;
}

}  // namespace bnf::qemu
