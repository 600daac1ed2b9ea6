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

Status VmManager::serve_incoming(transport::Connection& c, const proto::Frame& first) {
  if (first.header.type == proto::FrameType::vm_stream) return serve_stream(c, first);
  BNF_ASSIGN_OR_RETURN(json j, proto::parse_json_meta(first));
  BNF_ASSIGN_OR_RETURN(uint32_t version, proto::field<uint32_t>(j, "version"));
  if (version != proto::kVersion)
    return {Errc::version,
            fmt::format("unsupported protocol version {} (this daemon speaks {})", version, proto::kVersion)};
  if (!j.contains("definition")) return {Errc::protocol, "VM_HELLO lacks the VM definition"};
  BNF_ASSIGN_OR_RETURN(VmDefinition def, VmDefinition::from_json(j["definition"]));
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

  // Incremental only when our retained snapshot is exactly the source's arrival image.
  WritePlan plan;
  plan.size_bytes = def.memory_bytes;
  plan.peer = c.peer();
  plan.go_live = true;
  std::string fallback;
  auto base = store_.manifest(name);
  const bool record_matches = base.is_ok() && !store_.is_live(name) && is_arrival_of(j["arrival"], *base) &&
                              base->size_bytes == def.memory_bytes;
  // The manifest says what the image was; only the bytes prove what it is now:
  // they are checked while the trip runs (SnapshotWriter::start_base_check), and a
  // source told that they differ comes back asking for a full trip.
  BNF_ASSIGN_OR_RETURN(std::string force_full, proto::optional_field<std::string>(j, "force_full", ""));
  force_full = printable_peer_text(force_full);
  if (record_matches && !force_full.empty()) fallback = force_full + ": full transfer";
  if (record_matches && force_full.empty()) {
    plan.full = false;
    plan.key = base->key;
    plan.base_lineage = base->lineage;
    plan.base_epoch = base->epoch;
  } else {
    plan.key = random_digest_key();
    if (base.is_ok() && fallback.empty())
      fallback = "the retained snapshot here is not the image the VM left with: full transfer";
  }
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<SnapshotWriter> w, store_.begin_write(name, plan));
  if (!plan.full) w->start_base_check(PageDigester(plan.key));

  BNF_TRY(make_dirs(vm_dir(name)));
  const LaunchPaths lp = paths(name, w->image_file());
  const std::string incoming = vm_dir(name) + "/incoming.sock";
  std::error_code ec;
  std::filesystem::remove(lp.qmp_socket, ec);
  std::filesystem::remove(incoming, ec);
  // A full trip offered direct: the source QEMU's stream comes on a
  // connection of its own, named by this token (stream_rendezvous.hpp).
  BNF_ASSIGN_OR_RETURN(std::string stream_token, proto::optional_field<std::string>(j, "stream_token", ""));
  const bool direct = plan.full && !stream_token.empty() && c.capabilities().pollable;
  // The source's QEMU migrates already (direct) or starts on VM_ACCEPT
  // (relayed); ours is started after the answer and comes up meanwhile
  // (~0.1 s under load).
  BNF_ASSIGN_OR_RETURN(std::string sealed_key, proto::seal_digest_key(c, plan.key));
  json accept = {{"mode", plan.full ? "full" : "incremental"},
                 {"lineage", w->lineage()},
                 {"epoch", w->next_epoch()},
                 {"sealed_key", sealed_key},
                 {"fallback", fallback}};
  if (direct) accept["direct"] = true;
  BNF_TRY(proto::send_control(c, proto::FrameType::vm_accept, accept));
  // Our QEMU starts on a thread of its own: a direct trip's stream is being
  // read meanwhile (unread, it would hold the source QEMU back). It starts in
  // the background (lowest CPU priority) and gets ours back once it listens:
  // its start-up (~0.1 s of CPU) otherwise takes a core from the source's
  // pass wherever the two share a machine or a busy host (measured: a 1 GiB
  // first trip over 1 Gbit/s ~15 ms shorter with it started 2 s late).
  const bool background = direct && background_arrivals_;
  std::future<Result<QemuProcess>> spawning = std::async(std::launch::async, [&] {
    return QemuProcess::spawn(qemu_command(def, lp, "unix:" + incoming), vm_dir(name) + "/qemu.log", background);
  });
  const int normal_nice = ::getpriority(PRIO_PROCESS, 0);
  std::optional<QemuProcess> proc;
  auto qemu_started = [&]() -> Status {
    if (proc) return Status::ok();
    BNF_ASSIGN_OR_RETURN(QemuProcess p, spawning.get());
    proc.emplace(std::move(p));
    return Status::ok();
  };
  std::optional<QmpClient> qmp;
  UniqueFd qemu_in;
  auto connect_qemu = [&]() -> Result<int> {
    auto connected = [&]() -> Status {
      BNF_TRY(qemu_started());
      BNF_ASSIGN_OR_RETURN(qmp, QmpClient::connect(lp.qmp_socket, std::chrono::seconds(10)));
      BNF_ASSIGN_OR_RETURN(qemu_in, unix_connect(incoming, std::chrono::seconds(10)));
      return Status::ok();
    }();
    BNF_TRY(connected.context("destination QEMU (did it exit? see its qemu.log)"));
    if (Status st = background ? QemuProcess::set_nice(proc->pid(), normal_nice) : Status::ok(); !st.is_ok())
      log_.warn("vm {}: the arriving QEMU stays at the lowest CPU priority: {}", name, st.message());
    return qemu_in.get();
  };
  const PageDigester h(plan.key);
  const auto t_receive = std::chrono::steady_clock::now();
  Digest root;
  std::string stream_for_source;  // direct: the source's device-state blob, which it did not see
  if (direct) {
    BNF_ASSIGN_OR_RETURN(StreamRendezvous::Claim stream, streams_.claim(stream_token, c.peer(), kStreamWait));
    // Pages land while our QEMU starts: the feed connects to it in the background.
    BNF_ASSIGN_OR_RETURN(DirectArrival a,
                         receive_direct(c, *w, h, connect_qemu, stream.fd(), stream.take_read_ahead()));
    root = a.root;
    stream_for_source = std::move(a.stream_kept);
  } else {
    BNF_ASSIGN_OR_RETURN(int qemu_fd, connect_qemu());
    BNF_ASSIGN_OR_RETURN(root, receive_trip(c, *w, h, qemu_fd, peer_timeout_ms_));
  }
  const auto t_stream_end = std::chrono::steady_clock::now();
  if (!qmp) return Status(Errc::internal, "destination QEMU never connected");
  auto resumed_at = qmp->wait_incoming_loaded(std::chrono::seconds(60));
  BNF_TRY(resumed_at.status().context("destination QEMU"));
  const auto t_loaded = std::chrono::steady_clock::now();
  BNF_ASSIGN_OR_RETURN(Manifest m, w->commit(root, h));
  const auto t_committed = std::chrono::steady_clock::now();
  lk.lock();
  entry.def = def;
  entry.ram_file = w->image_file();
  runs_here(entry, std::move(*proc));
  BNF_TRY(save(entry));
  arrived = true;
  lk.unlock();
  log_.info("vm {}: arrived from {} ({}, epoch {})", name, c.peer(), plan.full ? "full" : "incremental", m.epoch);
  for (size_t off = 0; off < stream_for_source.size(); off += kStreamChunk) {
    const std::string_view part = std::string_view(stream_for_source).substr(off, kStreamChunk);
    BNF_TRY(proto::send_control(c, proto::FrameType::stream, json::object(), std::as_bytes(std::span(part))));
  }
  using Secs = std::chrono::duration<double>;
  return proto::send_control(c, proto::FrameType::vm_done,
                             {{"root", digest_hex(m.root)},
                              {"epoch", m.epoch},
                              {"resumed_at", *resumed_at},
                              {"receive_s", Secs(t_stream_end - t_receive).count()},
                              {"load_s", Secs(t_loaded - t_stream_end).count()},
                              {"commit_s", Secs(t_committed - t_loaded).count()}});
}

}  // namespace bnf::qemu
