#include "vm/peer_reason.hpp"

#include "protocol/control.hpp"

namespace bnf::qemu {

Status peer_reason(transport::Connection& c, const Status& broke, bool by_qemu) {
  constexpr std::string_view kPeer = "peer: ";  // how recv_frame words an ERROR frame
  auto from_peer = [&](const Status& s) { return s.message().starts_with(kPeer); };
  auto destination_failed = [&](const Status& s) {
    return Status(s.code(), "destination failed: " + s.message().substr(kPeer.size()));
  };
  if (from_peer(broke)) return destination_failed(broke);
  if (broke.code() != Errc::connection_lost) return broke;
  auto f = proto::recv_frame(c);  // still readable after a failed send
  if (f.is_ok()) return broke;
  if (from_peer(f.status())) return destination_failed(f.status());
  if (by_qemu) return Status(Errc::connection_lost, f.status().message() + " (" + broke.message() + ")");
  return broke;
}

}  // namespace bnf::qemu
