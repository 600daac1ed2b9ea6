#include "vm/source/agreement.hpp"

#include "common/peer_text.hpp"
#include "protocol/control.hpp"
#include "protocol/peer_auth.hpp"

namespace bnf::qemu {

using nlohmann::json;

Result<Agreement> agree(transport::Connection& c, SnapshotStore& store, const VmDefinition& def,
                        const std::string& force_full, const std::string& stream_token, bool offer_shared) {
  json arrival = nullptr;
  auto m = store.manifest(def.name);
  if (m.is_ok()) arrival = {{"lineage", m->lineage}, {"epoch", m->epoch}, {"root", digest_hex(m->root)}};
  BNF_TRY(proto::send_control(c, proto::FrameType::vm_hello,
                              {{"version", proto::kVersion},
                               {"definition", def.to_json()},
                               {"arrival", arrival},
                               {"force_full", force_full},
                               {"stream_token", stream_token},
                               {"ram", offer_shared ? "shared" : "stream"}}));
  BNF_ASSIGN_OR_RETURN(proto::Frame af, proto::expect_frame(c, proto::FrameType::vm_accept));
  BNF_ASSIGN_OR_RETURN(json a, proto::parse_json_meta(af));
  Agreement g;
  BNF_ASSIGN_OR_RETURN(g.rep.mode, proto::field<std::string>(a, "mode"));
  BNF_ASSIGN_OR_RETURN(g.rep.lineage, proto::field<std::string>(a, "lineage"));
  BNF_ASSIGN_OR_RETURN(g.rep.epoch, proto::field<uint64_t>(a, "epoch"));
  BNF_ASSIGN_OR_RETURN(std::string sealed_key, proto::field<std::string>(a, "sealed_key"));
  BNF_ASSIGN_OR_RETURN(g.key, proto::open_digest_key(c, sealed_key));
  g.rep.fallback = printable_peer_text(proto::field_or<std::string>(a, "fallback", ""));
  BNF_ASSIGN_OR_RETURN(const proto::TransferMode mode,
                       parse_choice(proto::kTransferModes, "VM_ACCEPT's mode", g.rep.mode, Errc::protocol));
  g.shared = offer_shared && proto::field_or<std::string>(a, "ram", "stream") == "shared";
  g.direct = !stream_token.empty() && mode == proto::TransferMode::full && proto::field_or(a, "direct", false);
  if (mode == proto::TransferMode::incremental) {
    if (!m.is_ok() || m->lineage != g.rep.lineage || m->key != g.key)
      return Status(Errc::protocol, "destination chose incremental against a base this host cannot prove");
    BNF_ASSIGN_OR_RETURN(g.base, store.load_table(*m));
    g.base_epoch = m->epoch;
  }
  return g;
}

Result<json> await_arrival(transport::Connection& c, const Digest& root) {
  BNF_TRY(proto::send_control(c, proto::FrameType::vm_end, {{"root", digest_hex(root)}}));
  BNF_ASSIGN_OR_RETURN(proto::Frame done, proto::recv_frame(c));
  std::vector<std::byte> late;
  while (done.header.type == proto::FrameType::return_path) {  // our QEMU ended its stream: nobody to tell
    BNF_TRY(proto::recv_payload(c, done, proto::kMaxReturnPathPayload, late));
    BNF_ASSIGN_OR_RETURN(done, proto::recv_frame(c));
  }
  if (done.header.type != proto::FrameType::vm_done)
    return Status(Errc::protocol,
                  std::string("unexpected ") + proto::type_name(done.header.type) + " frame (expected VM_DONE)");
  BNF_ASSIGN_OR_RETURN(json dj, proto::parse_json_meta(done));
  if (proto::field_or<std::string>(dj, "root", "") != digest_hex(root))
    return Status(Errc::corrupt, "destination landed a different image (digest roots differ)");
  return dj;
}

}  // namespace bnf::qemu
