#include "vm/destination/relayed_arrival.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <vector>

#include "common/files.hpp"
#include "common/unix_socket.hpp"
#include "protocol/control.hpp"
#include "push/landing.hpp"
#include "vm/trip/return_path.hpp"

namespace bnf::qemu {

using nlohmann::json;

// Frames until VM_END: pages to the image, stream bytes to QEMU.
// A relayed trip: pages land in the image, the rest of the stream goes to our
// QEMU, and what our QEMU says on its return path goes back between frames.
Result<Digest> receive_relayed(transport::Connection& c, SnapshotWriter& w, const PageDigester& h, int qemu_fd,
                               unsigned peer_timeout_ms) {
  std::vector<std::byte> buf;
  ReturnPathPump return_path(c, qemu_fd, static_cast<int>(peer_timeout_ms));
  while (true) {
    BNF_TRY(return_path.until_frame());
    BNF_ASSIGN_OR_RETURN(proto::Frame f, proto::recv_frame(c));
    BNF_ASSIGN_OR_RETURN(bool landed, land_if_pages(c, w, h, f));
    if (landed) continue;
    switch (f.header.type) {
      case proto::FrameType::stream:
        BNF_TRY(proto::recv_payload(c, f, proto::kMaxStreamPayload, buf));
        BNF_TRY(send_all(qemu_fd, {reinterpret_cast<const char*>(buf.data()), buf.size()}, "feed destination QEMU"));
        break;
      case proto::FrameType::vm_switch:
        if (!w.plan().full) {
          BNF_ASSIGN_OR_RETURN(uint64_t differ, w.finish_base_check());
          if (differ != 0)
            return Status(Errc::base_changed,
                          fmt::format("the retained snapshot was changed behind bnf's back ({} pages "
                                      "differ from its digest table, e.g. page {})",
                                      differ, fmt::join(w.base_check_examples(), ", ")));
        }
        break;
      case proto::FrameType::vm_end: {
        if (w.base_check_pending()) return Status(Errc::protocol, "VM_END before VM_SWITCH");
        BNF_ASSIGN_OR_RETURN(json j, proto::parse_json_meta(f));
        BNF_ASSIGN_OR_RETURN(std::string root, proto::field<std::string>(j, "root"));
        return digest_from_hex(root);
      }
      default:
        return Status(Errc::protocol, std::string("unexpected ") + proto::type_name(f.header.type) + " in a migration");
    }
  }
}

}  // namespace bnf::qemu
