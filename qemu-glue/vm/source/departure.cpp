#include "vm/source/departure.hpp"

#include <chrono>
#include <thread>

#include "common/elapsed.hpp"
#include "common/random.hpp"
#include "protocol/control.hpp"
#include "vm/source/direct_departure.hpp"
#include "vm/source/direct_trip.hpp"
#include "vm/source/relayed_trip.hpp"
#include "vm/source/shared_trip.hpp"
#include "vm/trip/peer_reason.hpp"
#include "vm/trip/ram_tracker.hpp"

namespace bnf::qemu {

using nlohmann::json;

namespace {

// After a failed trip: the VM must keep running here.
void keep_running_here(QmpClient& qmp, const Logger& log, const std::string& name) {
  auto st = qmp.execute("query-migrate");
  const std::string migration = st.is_ok() ? st->value("status", std::string()) : "";
  if (migration == "active" || migration == "setup") (void)qmp.execute("migrate_cancel");
  for (int i = 0; i < 50; ++i) {
    auto s = qmp.execute("query-status");
    if (!s.is_ok()) break;
    const std::string state = s->value("status", std::string());
    if (state == "running") return;
    if (state == "postmigrate" || state == "paused" || state == "finish-migrate") (void)qmp.execute("cont");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  log.warn("vm {}: could not confirm it runs again after the failed migration", name);
}

// Where the destination's figures go in the report.
void report_arrival(Departed& d, double t0_wall) {
  for (const char* k : {"receive_s", "load_s", "commit_s"})
    d.rep.phases[std::string("destination_") + k] = proto::field_or(d.done, k, 0.0);
  if (!d.done.contains("resumed_at")) return;
  const double resumed = proto::field_or(d.done, "resumed_at", 0.0);
  d.rep.running_after_s = resumed - t0_wall;
  if (d.stop_event) d.rep.downtime_ms = 1000.0 * (resumed - QmpClient::event_time(*d.stop_event));
}

void log_departure(const Logger& log, const std::string& name, const Endpoint& to, const MigrationReport& rep) {
  log.info("vm {}: migrated to {} ({}{}, ram {}, {} pages sent, {} skipped)", name, to.to_string(), rep.mode,
           rep.direct ? ", direct" : "", rep.ram_mode, rep.pages_sent, rep.pages_skipped);
  if (rep.pages_fixed_at_switchover != 0)
    log.warn("vm {}: QEMU did not resend {} changed pages; the switchover check sent them", name,
             rep.pages_fixed_at_switchover);
}

}  // namespace

Departure::Departure(const DepartureServices& services, DepartingVm vm, Endpoint to, const MigrateOptions& opt,
                     Progress progress, std::string force_full)
    : services_(services),
      vm_(std::move(vm)),
      to_(std::move(to)),
      opt_(opt),
      progress_(std::move(progress)),
      force_full_(std::move(force_full)),
      // No arrival record: the trip is full, and may go direct: QEMU's stream
      // starts on a connection of its own while the handshake runs beside it
      // (destination/stream_rendezvous.hpp). Otherwise QEMU's migration into
      // our socket starts first and its first bytes wait there during the
      // handshake.
      offer_direct_(opt.direct && services.transport.capabilities().pollable &&
                    !services.store.manifest(vm_.def.name).is_ok()),
      check_(opt.switchover_check.value_or(vm_.def.accel == "tcg")),
      // The return path is relayed where both daemons can wait on the bnf
      // connection's socket beside QEMU's (trip/return_path.hpp).
      return_path_(services.transport.capabilities().pollable) {
  if (offer_direct_) stream_token_ = to_hex(random_digest_key());  // 256 random bits name the stream
}

Result<MigrationReport> Departure::run(const Left& left) {
  WalksPaused walks(vm_.warm);
  BNF_TRY(choose_ram_mode().context("migration of " + vm_.def.name));  // nothing started yet: the VM runs on
  begin();
  auto qmp = QmpClient::connect(vm_.qmp_socket, std::chrono::seconds(5));
  if (!qmp.is_ok()) return qmp.status();  // the destination drops what the start began
  qmp_.emplace(std::move(*qmp));
  if (Status st = start_qemu(); !st.is_ok()) return fail_here(st);
  if (Status st = agree(); !st.is_ok()) return fail_here(st);
  Result<Departed> trip = transfer();
  if (!trip.is_ok()) return fail_here(peer_reason(*c_, trip.status()));
  report_arrival(*trip, t0_wall_);
  trip->rep.ram_mode = shared_ ? "shared" : "stream";
  trip->rep.ram_mode_reason = ram_mode_reason_;
  // Switched over: the VM runs there. Our RAM file becomes the retained snapshot.
  if (trip->complete) trip->complete(*trip);  // before the quit: see Departed::complete
  BNF_TRY(commit(*trip, walks, left));
  MigrationReport& rep = trip->rep;
  const auto cs = c_->stats();
  rep.wire_bytes = cs.bytes_sent + cs.bytes_received + (rep.direct ? rep.stream_bytes_in : 0);
  rep.seconds = since(t0_);
  log_departure(services_.log, vm_.def.name, to_, rep);
  return std::move(rep);
}

// Shared mode where it was asked for and can run: its tracker is the one
// armed as the VM arrived, or one armed now, before round 0 reads anything;
// the trip is relayed, without the switchover check (bnf moves every page of
// the RAM file itself).
Status Departure::choose_ram_mode() {
  if (opt_.ram_mode == MigrateOptions::RamMode::stream) {
    ram_mode_reason_ = "--mode stream";
    return Status::ok();
  }
  if (!vm_.tracking.writes) {
    RamTracker armed = arm_ram_tracker(vm_.def, vm_.ram_file, vm_.proc.pid());
    if (!armed.tracker) {
      if (opt_.ram_mode == MigrateOptions::RamMode::shared)
        return Status(Errc::invalid_argument, "shared mode cannot run: " + armed.why_not);
      ram_mode_reason_ = armed.why_not;
      return Status::ok();
    }
    shared_tracker_ = std::move(armed.tracker);
  }
  shared_ = true;
  offer_direct_ = false;
  stream_token_.clear();
  check_ = false;
  return Status::ok();
}

// The agreement starts, and a direct trip's stream connection with it.
void Departure::begin() {
  auto handshake = [this]() -> Result<Handshake> {
    BNF_ASSIGN_OR_RETURN(std::unique_ptr<transport::Connection> conn, services_.transport.connect(to_));
    BNF_ASSIGN_OR_RETURN(Agreement g,
                         qemu::agree(*conn, services_.store, vm_.def, force_full_, stream_token_, shared_));
    return Handshake{std::move(conn), std::move(g)};
  };
  auto open_stream = [this] {
    return open_direct_stream(to_, stream_token_, services_.transport, services_.peer_timeout_ms);
  };
  writes_.emplace(check_, opt_.track_writes, offer_direct_, vm_.ram_file, vm_.proc.pid(), vm_.def);
  // One write-protect registration per mapping: the check's tracker replaces the one since arrival.
  if (writes_->wanted() && vm_.tracking.writes)
    vm_.tracking.lose("a stream-mode trip's switchover check took the tracker");
  start_.emplace(offer_direct_, shared_, handshake, open_stream, *writes_);
}

Status Departure::start_qemu() {
  t_stream_ = Clock::now();
  return start_->begin(*qmp_, vm_.relay_socket, return_path_, t0_);  // the handshake is waited for as it goes
}

Status Departure::agree() {
  BNF_ASSIGN_OR_RETURN(Handshake shaken, start_->handshake());
  c_ = std::move(shaken.c);
  agreed_.emplace(std::move(shaken.g));
  agreed_->rep.phases["handshake_s"] = since(t0_);
  agreed_->rep.phases["migrate_issued_s"] = start_->migrate_issued_s();
  if (offer_direct_ && !agreed_->direct)
    return Status(Errc::protocol, "the destination did not take QEMU's direct stream");
  if (shared_ && !agreed_->shared) {
    if (opt_.ram_mode == MigrateOptions::RamMode::shared)
      return Status(Errc::version, "the destination does not take shared mode");
    shared_ = false;  // stream mode after all, with the check it would have had
    shared_tracker_.reset();
    ram_mode_reason_ = "the destination does not take shared mode";
    check_ = opt_.switchover_check.value_or(vm_.def.accel == "tcg");
  }
  read_before_tracking_ = start_->read_before_tracking(*qmp_);
  if (writes_->start_s() > 0) agreed_->rep.phases["write_tracker_start_s"] = writes_->start_s();
  return Status::ok();
}

Result<Departed> Departure::transfer() {
  TripContext x{*qmp_,
                *c_,
                *agreed_,
                vm_.def,
                vm_.ram_file,
                vm_.warm,
                vm_.proc.pid(),
                opt_,
                progress_,
                services_.log,
                t0_,
                return_path_ && c_->capabilities().pollable,
                check_,
                writes_->take(),
                writes_->why_not(),
                read_before_tracking_};
  if (offer_direct_) return direct_trip(x, to_, services_.peer_timeout_ms);
  if (start_->deferred()) return transfer_shared(x);
  return relay_trip(x, start_->take_qemu_socket(), t_stream_);
}

// QEMU's migration was held back for shared mode: it starts after bnf's
// rounds, or now if the destination declined them.
Result<Departed> Departure::transfer_shared(TripContext& x) {
  auto start_qemu = [this, &x] {
    t_stream_ = Clock::now();
    return start_->start_relayed(*qmp_, vm_.relay_socket, x.return_path, shared_, t0_);
  };
  if (shared_) {
    if (shared_tracker_) return shared_trip(x, {*shared_tracker_, nullptr, vm_.tracking.lost_because}, start_qemu);
    return shared_trip(x, {*vm_.tracking.writes, vm_.tracking.writes.get(), ""}, start_qemu);
  }
  BNF_ASSIGN_OR_RETURN(UniqueFd qfd, start_qemu());
  return relay_trip(x, std::move(qfd), t_stream_);
}

// The VM runs on `to_` now: our QEMU quits and its RAM file becomes the
// retained snapshot, with the departure's table and device state.
Status Departure::commit(Departed& d, WalksPaused& walks, const Left& left) {
  MigrationReport& rep = d.rep;
  const auto t_commit = Clock::now();
  (void)qmp_->execute("quit");
  if (!vm_.proc.wait(std::chrono::seconds(10)).is_ok()) vm_.proc.kill();
  BNF_ASSIGN_OR_RETURN(
      Manifest dep, services_.store.commit_departure(vm_.def.name, vm_.ram_file, rep.lineage, rep.epoch, agreed_->key,
                                                     d.table, to_.to_string(), d.stream));
  walks.forget();  // the warm mapping goes with the VM
  BNF_TRY(left(dep));
  rep.phases["source_commit_s"] = since(t_commit);
  release_zero_pages(dep, d.table, rep);
  // After the hole punching, which the proof's watch would count as a change.
  if (Status st = services_.store.prove_ahead(vm_.def.name); !st.is_ok())
    services_.log.warn("vm {}: the retained snapshot is not proven ahead, its next arrival proves it: {}", vm_.def.name,
                       st.message());
  return Status::ok();
}

// QEMU's pass allocated every page of the RAM file on its way: the zero
// pages go back to the host (not part of the commit: if it fails, the
// snapshot is whole, only larger).
void Departure::release_zero_pages(const Manifest& dep, const DigestTable& table, MigrationReport& rep) {
  const auto t_release = Clock::now();
  if (Result<uint64_t> released = services_.store.release_zero_pages(dep, table); released.is_ok())
    rep.snapshot_bytes_released = *released;
  else
    services_.log.warn("vm {}: the retained snapshot keeps its zero pages: {}", vm_.def.name,
                       released.status().message());
  rep.phases["release_zero_pages_s"] = since(t_release);
}

Status Departure::fail_here(const Status& st) {
  start_->close_stream();  // a QEMU blocked writing its stream fails its migration and runs on
  keep_running_here(*qmp_, services_.log, vm_.def.name);
  return st.context("migration of " + vm_.def.name + " failed, the VM keeps running here");
}

}  // namespace bnf::qemu
