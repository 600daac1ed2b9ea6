// Destination side of a VM migration: lands pages in the snapshot image that
// QEMU maps, feeds the rest of the stream to QEMU, and commits the arrival.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <thread>

#include "common/files.hpp"
#include "common/peer_text.hpp"
#include "common/unix_socket.hpp"
#include "push/landing.hpp"
#include "qmp/qmp_client.hpp"
#include "transport/tcp/socket_util.hpp"
#include "vm/direct_arrival.hpp"
#include "vm/return_path.hpp"
#include "vm/stream_tunnel.hpp"
#include "vm/vm_manager.hpp"

namespace bnf::qemu {

using nlohmann::json;

namespace {

constexpr size_t kStreamChunk = 256U << 10;
// A direct trip's two connections are opened together; one waits this long at
// most for the other.
constexpr std::chrono::seconds kStreamWait{10};

// Frames until VM_END: pages to the image, stream bytes to QEMU.
// A relayed trip: pages land in the image, the rest of the stream goes to our
// QEMU, and what our QEMU says on its return path goes back between frames.
Result<Digest> receive_trip(transport::Connection& c, SnapshotWriter& w, const PageDigester& h, int qemu_fd,
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

// VM_HELLO's arrival record names exactly `base` (a record of another shape names nothing).
bool is_arrival_of(const json& arrival, const Manifest& base) {
  auto lineage = proto::field<std::string>(arrival, "lineage");
  auto epoch = proto::field<uint64_t>(arrival, "epoch");
  auto root = proto::field<std::string>(arrival, "root");
  return lineage.is_ok() && epoch.is_ok() && root.is_ok() && *lineage == base.lineage && *epoch == base.epoch &&
         *root == digest_hex(base.root);
}

// Our QEMU for an arriving VM. It starts on a thread of its own: a direct
// trip's stream is being read meanwhile (unread, it would hold the source
// QEMU back). In a direct trip it starts in the background (lowest CPU
// priority) and gets ours back once it listens: its start-up (~0.1 s of CPU)
// otherwise takes a core from the source's pass wherever the two share a
// machine or a busy host (measured: a 1 GiB first trip over 1 Gbit/s ~15 ms
// shorter with it started 2 s late).
class ArrivingQemu {
 public:
  ArrivingQemu(std::vector<std::string> argv, const std::string& log_file, LaunchPaths lp, std::string incoming,
               bool background, const Logger& log, std::string name)
      : lp_(std::move(lp)),
        incoming_(std::move(incoming)),
        background_(background),
        normal_nice_(::getpriority(PRIO_PROCESS, 0)),
        log_(log),
        name_(std::move(name)) {
    spawning_ = std::async(std::launch::async, [argv = std::move(argv), log_file, background] {
      return QemuProcess::spawn(argv, log_file, background);
    });
  }

  // QMP and the incoming-migration socket, once QEMU listens; the socket's fd.
  Result<int> connect() {
    BNF_TRY(connect_once().context("destination QEMU (did it exit? see its qemu.log)"));
    if (Status st = background_ ? QemuProcess::set_nice(proc_->pid(), normal_nice_) : Status::ok(); !st.is_ok())
      log_.warn("vm {}: the arriving QEMU stays at the lowest CPU priority: {}", name_, st.message());
    return qemu_in_.get();
  }
  [[nodiscard]] QmpClient* qmp() { return qmp_ ? &*qmp_ : nullptr; }
  [[nodiscard]] QemuProcess take_process() { return std::move(*proc_); }

 private:
  Status connect_once() {
    if (!proc_) {
      BNF_ASSIGN_OR_RETURN(QemuProcess p, spawning_.get());
      proc_.emplace(std::move(p));
    }
    BNF_ASSIGN_OR_RETURN(qmp_, QmpClient::connect(lp_.qmp_socket, std::chrono::seconds(10)));
    BNF_ASSIGN_OR_RETURN(qemu_in_, unix_connect(incoming_, std::chrono::seconds(10)));
    return Status::ok();
  }

  LaunchPaths lp_;
  std::string incoming_;
  bool background_;
  int normal_nice_;
  const Logger& log_;
  std::string name_;
  std::future<Result<QemuProcess>> spawning_;
  std::optional<QemuProcess> proc_;
  std::optional<QmpClient> qmp_;
  UniqueFd qemu_in_;
};

// VM_HELLO's version and VM definition.
Result<VmDefinition> read_vm_hello(const json& j) {
  BNF_TRY(proto::check_version(j));
  if (!j.contains("definition")) return Status(Errc::protocol, "VM_HELLO lacks the VM definition");
  return VmDefinition::from_json(j["definition"]);
}

// The answer to VM_HELLO: the mode, the lineage and epoch the arrival
// becomes, the digest key (sealed), and why the trip is full if it could
// have been incremental.
Status send_vm_accept(transport::Connection& c, const SnapshotWriter& w, const Arrival& a, bool direct) {
  BNF_ASSIGN_OR_RETURN(std::string sealed_key, proto::seal_digest_key(c, a.plan.key));
  json accept = {{"mode", a.plan.full ? "full" : "incremental"},
                 {"lineage", w.lineage()},
                 {"epoch", w.next_epoch()},
                 {"sealed_key", sealed_key},
                 {"fallback", a.fallback}};
  if (direct) accept["direct"] = true;
  return proto::send_control(c, proto::FrameType::vm_accept, accept);
}

// After the commit: the source's copy of the device state it did not see
// (direct trips), then VM_DONE with the arrival's root and timings.
Status send_vm_done(transport::Connection& c, const Manifest& m, std::string_view stream_for_source, double resumed_at,
                    const ArrivalTimes& t) {
  for (size_t off = 0; off < stream_for_source.size(); off += kStreamChunk) {
    const std::string_view part = stream_for_source.substr(off, kStreamChunk);
    BNF_TRY(proto::send_control(c, proto::FrameType::stream, json::object(), std::as_bytes(std::span(part))));
  }
  using Secs = std::chrono::duration<double>;
  return proto::send_control(c, proto::FrameType::vm_done,
                             {{"root", digest_hex(m.root)},
                              {"epoch", m.epoch},
                              {"resumed_at", resumed_at},
                              {"receive_s", Secs(t.stream_end - t.receive).count()},
                              {"load_s", Secs(t.loaded - t.stream_end).count()},
                              {"commit_s", Secs(t.committed - t.loaded).count()}});
}

}  // namespace

// A direct trip's QEMU stream, held until its trip (VM_HELLO with the same
// token, normally already under way) has read it to the end.
Status VmManager::serve_stream(transport::Connection& c, const proto::Frame& f) {
  BNF_ASSIGN_OR_RETURN(json j, proto::parse_json_meta(f));
  BNF_ASSIGN_OR_RETURN(std::string token, proto::field<std::string>(j, "token"));
  // The stream's codec reads plaintext from the tunnel's local end.
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<StreamTunnel> tunnel, StreamTunnel::start(c));
  UniqueFd local = tunnel->take_local_end();
  Status served = streams_.serve(token, c.peer(), local.get(), kStreamWait);
  local.reset();  // the tunnel relays what is left and says EOF
  if (!served.is_ok()) return served;
  return tunnel->wait();
}

// Incremental only when our retained snapshot is exactly the source's arrival image.
Result<Arrival> VmManager::plan_arrival(const VmDefinition& def, const json& hello, const std::string& peer) {
  Arrival a;
  a.plan.size_bytes = def.memory_bytes;
  a.plan.peer = peer;
  a.plan.go_live = true;
  auto base = store_.manifest(def.name);
  const bool record_matches = base.is_ok() && !store_.is_live(def.name) && hello.contains("arrival") &&
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

Status VmManager::serve_incoming(transport::Connection& c, const proto::Frame& first) {
  if (first.header.type == proto::FrameType::vm_stream) return serve_stream(c, first);
  BNF_ASSIGN_OR_RETURN(json j, proto::parse_json_meta(first));
  BNF_ASSIGN_OR_RETURN(VmDefinition def, read_vm_hello(j));
  BNF_TRY(check_qemu_args(def));  // the peer's definition, checked as one made here
  const std::string& name = def.name;
  std::unique_lock lk(mu_);
  auto [slot, is_new] = vms_.try_emplace(name, Vm{def, "", std::nullopt, nullptr, "arriving"});
  if (slot->second.busy) return {Errc::busy, "VM '" + name + "' is being migrated on this host"};
  if (slot->second.proc && slot->second.proc->running())
    return {Errc::busy, "VM '" + name + "' already runs on this host"};
  slot->second.busy = true;
  lk.unlock();
  Vm& entry = slot->second;
  bool arrived = false;
  struct ArrivalGuard {  // not busy any more; a VM this host never knew is forgotten if it did not arrive
    VmManager& self;
    std::map<std::string, Vm>::iterator slot;
    bool is_new;
    const bool& arrived;
    ~ArrivalGuard() {
      std::lock_guard g(self.mu_);
      if (!arrived && is_new)
        self.vms_.erase(slot);
      else
        slot->second.busy = false;
    }
  } guard{*this, slot, is_new, arrived};

  BNF_ASSIGN_OR_RETURN(Arrival a, plan_arrival(def, j, c.peer()));
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<SnapshotWriter> w, store_.begin_write(name, a.plan));
  if (!a.plan.full) w->start_base_check(PageDigester(a.plan.key));
  BNF_ASSIGN_OR_RETURN(Arrived got, arrive(c, def, j, a, *w));
  lk.lock();
  entry.def = def;
  entry.ram_file = w->image_file();
  runs_here(entry, std::move(*got.proc));
  BNF_TRY(save(entry));
  arrived = true;
  lk.unlock();
  log_.info("vm {}: arrived from {} ({}, epoch {})", name, c.peer(), a.plan.full ? "full" : "incremental",
            got.manifest.epoch);
  return send_vm_done(c, got.manifest, got.stream_for_source, got.resumed_at, got.times);
}

// The trip itself, once the image is open for writing: the answer, our QEMU,
// the pages and the stream, QEMU's load and the commit.
Result<Arrived> VmManager::arrive(transport::Connection& c, const VmDefinition& def, const json& hello,
                                  const Arrival& a, SnapshotWriter& w) {
  const std::string& name = def.name;
  BNF_TRY(make_dirs(vm_dir(name)));
  const LaunchPaths lp = paths(name, w.image_file());
  const std::string incoming = vm_dir(name) + "/incoming.sock";
  std::error_code ec;
  std::filesystem::remove(lp.qmp_socket, ec);
  std::filesystem::remove(incoming, ec);
  // A full trip offered direct: the source QEMU's stream comes on a
  // connection of its own, named by this token (stream_rendezvous.hpp).
  BNF_ASSIGN_OR_RETURN(std::string stream_token, proto::optional_field<std::string>(hello, "stream_token", ""));
  const bool direct = a.plan.full && !stream_token.empty() && c.capabilities().pollable;
  // The source's QEMU migrates already (direct) or starts on VM_ACCEPT
  // (relayed); ours is started after the answer and comes up meanwhile
  // (~0.1 s under load).
  BNF_TRY(send_vm_accept(c, w, a, direct));
  ArrivingQemu qemu(qemu_command(def, lp, "unix:" + incoming), vm_dir(name) + "/qemu.log", lp, incoming,
                    direct && background_arrivals_, log_, name);
  auto connect_qemu = [&qemu] { return qemu.connect(); };
  const PageDigester h(a.plan.key);
  Arrived got;
  got.times.receive = std::chrono::steady_clock::now();
  Digest root;
  if (direct) {
    BNF_ASSIGN_OR_RETURN(StreamRendezvous::Claim stream, streams_.claim(stream_token, c.peer(), kStreamWait));
    // Pages land while our QEMU starts: the feed connects to it in the background.
    BNF_ASSIGN_OR_RETURN(DirectArrival da,
                         receive_direct(c, w, h, connect_qemu, stream.fd(), stream.take_read_ahead()));
    root = da.root;
    got.stream_for_source = std::move(da.stream_kept);
  } else {
    BNF_ASSIGN_OR_RETURN(int qemu_fd, qemu.connect());
    BNF_ASSIGN_OR_RETURN(root, receive_trip(c, w, h, qemu_fd, peer_timeout_ms_));
  }
  got.times.stream_end = std::chrono::steady_clock::now();
  if (qemu.qmp() == nullptr) return Status(Errc::internal, "destination QEMU never connected");
  auto resumed_at = qemu.qmp()->wait_incoming_loaded(std::chrono::seconds(60));
  BNF_TRY(resumed_at.status().context("destination QEMU"));
  got.resumed_at = *resumed_at;
  got.times.loaded = std::chrono::steady_clock::now();
  BNF_ASSIGN_OR_RETURN(got.manifest, w.commit(root, h));
  got.times.committed = std::chrono::steady_clock::now();
  got.proc = qemu.take_process();
  return got;
}

}  // namespace bnf::qemu
