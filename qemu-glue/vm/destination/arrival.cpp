#include "vm/destination/arrival.hpp"

#include <filesystem>

#include "common/files.hpp"
#include "common/page.hpp"
#include "common/peer_text.hpp"
#include "protocol/peer_auth.hpp"
#include "qmp/qmp_client.hpp"
#include "vm/destination/arriving_qemu.hpp"
#include "vm/destination/direct_arrival.hpp"
#include "vm/destination/relayed_arrival.hpp"
#include "vm/trip/ram_tracker.hpp"
#include "vm/trip/stream_tunnel.hpp"

namespace bnf::qemu {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kStreamChunk = 256U << 10;
// A direct trip's two connections are opened together; one waits this long at
// most for the other.
constexpr std::chrono::seconds kStreamWait{10};

// VM_HELLO's arrival record names exactly `base` (a record of another shape names nothing).
bool is_arrival_of(const json& arrival, const Manifest& base) {
  auto lineage = proto::field<std::string>(arrival, "lineage");
  auto epoch = proto::field<uint64_t>(arrival, "epoch");
  auto root = proto::field<std::string>(arrival, "root");
  return lineage.is_ok() && epoch.is_ok() && root.is_ok() && *lineage == base.lineage && *epoch == base.epoch &&
         *root == digest_hex(base.root);
}

}  // namespace

Result<VmDefinition> read_vm_hello(const json& j) {
  BNF_TRY(proto::check_version(j));
  if (!j.contains("definition")) return Status(Errc::protocol, "VM_HELLO lacks the VM definition");
  return VmDefinition::from_json(j["definition"]);
}

Result<ArrivalPlan> plan_arrival(const SnapshotStore& store, const VmDefinition& def, const json& hello,
                                 const std::string& peer) {
  ArrivalPlan a;
  a.plan.size_bytes = def.memory_bytes;
  a.plan.peer = peer;
  a.plan.go_live = true;
  auto base = store.manifest(def.name);
  const bool record_matches = base.is_ok() && !store.is_live(def.name) && hello.contains("arrival") &&
                              is_arrival_of(hello["arrival"], *base) && base->size_bytes == def.memory_bytes;
  // The manifest says what the image was; only the bytes prove what it is now:
  // they are checked while the trip runs (SnapshotWriter::start_base_check), and a
  // source told that they differ comes back asking for a full trip.
  BNF_ASSIGN_OR_RETURN(std::string force_full, proto::optional_field<std::string>(hello, "force_full", ""));
  force_full = printable_peer_text(force_full);
  if (record_matches && !force_full.empty()) a.fallback = force_full + ": full transfer";
  if (record_matches && force_full.empty()) {
    a.plan.full = false;
    a.plan.key = base->key;
    a.plan.base_lineage = base->lineage;
    a.plan.base_epoch = base->epoch;
  } else {
    a.plan.key = random_digest_key();
    if (base.is_ok() && a.fallback.empty())
      a.fallback = "the retained snapshot here is not the image the VM left with: full transfer";
  }
  return a;
}

Status serve_direct_stream(transport::Connection& c, const proto::Frame& f, StreamRendezvous& streams) {
  BNF_ASSIGN_OR_RETURN(json j, proto::parse_json_meta(f));
  BNF_ASSIGN_OR_RETURN(std::string token, proto::field<std::string>(j, "token"));
  // The stream's codec reads plaintext from the tunnel's local end.
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<StreamTunnel> tunnel, StreamTunnel::start(c));
  UniqueFd local = tunnel->take_local_end();
  Status served = streams.serve(token, c.peer(), local.get(), kStreamWait);
  local.reset();  // the tunnel relays what is left and says EOF
  if (!served.is_ok()) return served;
  return tunnel->wait();
}

ArrivingTrip::ArrivingTrip(const ArrivalServices& services, transport::Connection& c, const VmDefinition& def,
                           const json& hello, VmDir dir)
    : services_(services), c_(c), def_(def), hello_(hello), dir_(std::move(dir)) {}

Result<Arrived> ArrivingTrip::run() {
  BNF_ASSIGN_OR_RETURN(plan_, plan_arrival(services_.store, def_, hello_, c_.peer()));
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<SnapshotWriter> w, services_.store.begin_write(def_.name, plan_.plan));
  if (!plan_.plan.full) {
    if (w->base_proven_ahead())
      services_.log.info("vm {}: its retained snapshot was proven while it was away", def_.name);
    else if (!w->base_proof_doubt().empty())
      services_.log.info("vm {}: its retained snapshot is proven during the trip: {}", def_.name,
                         w->base_proof_doubt());
    w->start_base_check(PageDigester(plan_.plan.key));
  }
  BNF_TRY(make_dirs(dir_.path));
  const LaunchPaths lp = dir_.launch(w->image_file());
  const std::string incoming = dir_.file("incoming.sock");
  std::error_code ec;
  std::filesystem::remove(lp.qmp_socket, ec);
  std::filesystem::remove(incoming, ec);
  // A full trip offered direct: the source QEMU's stream comes on a
  // connection of its own, named by this token (stream_rendezvous.hpp).
  BNF_ASSIGN_OR_RETURN(stream_token_, proto::optional_field<std::string>(hello_, "stream_token", ""));
  const bool direct = plan_.plan.full && !stream_token_.empty() && c_.capabilities().pollable;
  // Shared mode, offered: our QEMU waits for its capability (x-ignore-shared)
  // before it listens, and leaves the image to the pages that land in it.
  BNF_ASSIGN_OR_RETURN(const std::string ram, proto::optional_field<std::string>(hello_, "ram", "stream"));
  shared_ = ram == "shared" && !direct;
  // The source's QEMU migrates already (direct) or starts on VM_ACCEPT
  // (relayed); ours is started after the answer and comes up meanwhile
  // (~0.1 s under load).
  BNF_TRY(accept(*w, direct));
  ArrivingQemu qemu(qemu_command(def_, lp, shared_ ? "defer" : "unix:" + incoming), dir_.file("qemu.log"), lp, incoming,
                    direct && services_.background_qemu, services_.log, def_.name);
  if (shared_) qemu.ignore_shared();
  Arrived got;
  got.image_file = w->image_file();
  got.times.receive = Clock::now();
  BNF_ASSIGN_OR_RETURN(Digest root, transfer(*w, qemu, direct, got));
  got.times.stream_end = Clock::now();
  BNF_TRY(switch_over(qemu, got));
  BNF_ASSIGN_OR_RETURN(got.manifest, w->commit(root, PageDigester(plan_.plan.key)));
  got.times.committed = Clock::now();
  got.proc = qemu.take_process();
  return got;
}

// The answer to VM_HELLO: the mode, the lineage and epoch the arrival
// becomes, the digest key (sealed), and why the trip is full if it could
// have been incremental.
Status ArrivingTrip::accept(const SnapshotWriter& w, bool direct) {
  BNF_ASSIGN_OR_RETURN(std::string sealed_key, proto::seal_digest_key(c_, plan_.plan.key));
  json answer = {{"mode", plan_.plan.full ? "full" : "incremental"},
                 {"lineage", w.lineage()},
                 {"epoch", w.next_epoch()},
                 {"sealed_key", sealed_key},
                 {"fallback", plan_.fallback}};
  if (direct) answer["direct"] = true;
  if (shared_) answer["ram"] = "shared";
  return proto::send_control(c_, proto::FrameType::vm_accept, answer);
}

// The pages and the stream, to VM_END; returns the root it names.
Result<Digest> ArrivingTrip::transfer(SnapshotWriter& w, ArrivingQemu& qemu, bool direct, Arrived& got) {
  const PageDigester h(plan_.plan.key);
  if (!direct) {
    BNF_ASSIGN_OR_RETURN(int qemu_fd, qemu.connect());
    if (shared_) arm_tracking(w, qemu, got);
    return receive_relayed(c_, w, h, qemu_fd, services_.peer_timeout_ms);
  }
  BNF_ASSIGN_OR_RETURN(StreamRendezvous::Claim stream, services_.streams.claim(stream_token_, c_.peer(), kStreamWait));
  // Pages land while our QEMU starts: the feed connects to it in the background.
  auto connect_qemu = [&qemu] { return qemu.connect(); };
  BNF_ASSIGN_OR_RETURN(DirectArrival da, receive_direct(c_, w, h, connect_qemu, stream.fd(), stream.take_read_ahead()));
  got.stream_for_source = std::move(da.stream_kept);
  return da.root;
}

// Shared mode: our QEMU waits for its stream and the guest has not run here,
// so a tracker armed now names exactly what the guest writes since arrival.
// The pages bnf lands go through the image's own mapping, not QEMU's, and are
// not named.
void ArrivingTrip::arm_tracking(const SnapshotWriter& w, const ArrivingQemu& qemu, Arrived& got) const {
  RamTracker armed = arm_ram_tracker(def_, w.image_file(), qemu.pid());
  if (!armed.tracker) {
    got.tracking.lose("no tracker on arrival: " + armed.why_not);
    services_.log.warn("vm {}: its next trip back scans RAM: {}", def_.name, got.tracking.lost_because);
    return;
  }
  got.tracking.writes = std::make_unique<WritesSinceArrival>(std::move(armed.tracker), def_.memory_bytes / kPageSize);
  got.tracking.lost_because.clear();
}

// Our QEMU has loaded the device state: the VM runs here.
Status ArrivingTrip::switch_over(ArrivingQemu& qemu, Arrived& got) {
  if (qemu.qmp() == nullptr) return Status(Errc::internal, "destination QEMU never connected");
  auto resumed_at = qemu.qmp()->wait_incoming_loaded(std::chrono::seconds(60));
  BNF_TRY(resumed_at.status().context("destination QEMU"));
  got.resumed_at = *resumed_at;
  got.times.loaded = Clock::now();
  return Status::ok();
}

Status send_vm_done(transport::Connection& c, const Arrived& got) {
  const std::string_view stream_for_source = got.stream_for_source;
  for (size_t off = 0; off < stream_for_source.size(); off += kStreamChunk) {
    const std::string_view part = stream_for_source.substr(off, kStreamChunk);
    BNF_TRY(proto::send_control(c, proto::FrameType::stream, json::object(), std::as_bytes(std::span(part))));
  }
  using Secs = std::chrono::duration<double>;
  const ArrivalTimes& t = got.times;
  return proto::send_control(c, proto::FrameType::vm_done,
                             {{"root", digest_hex(got.manifest.root)},
                              {"epoch", got.manifest.epoch},
                              {"resumed_at", got.resumed_at},
                              {"receive_s", Secs(t.stream_end - t.receive).count()},
                              {"load_s", Secs(t.loaded - t.stream_end).count()},
                              {"commit_s", Secs(t.committed - t.loaded).count()}});
}

}  // namespace bnf::qemu
