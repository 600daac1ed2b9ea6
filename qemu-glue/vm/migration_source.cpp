// Source side of a VM migration: QEMU migrates into a local UNIX socket; the
// codec takes the main RAM block's pages out of the stream; pages the
// destination's base lacks travel as PAGES/ZEROS frames, the rest of the stream
// as STREAM frames, all on one ordered connection.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <thread>

#include "common/elapsed.hpp"
#include "common/files.hpp"
#include "common/peer_text.hpp"
#include "common/prefault.hpp"
#include "common/unix_socket.hpp"
#include "protocol/peer_auth.hpp"
#include "qmp/qmp_client.hpp"
#include "snapshot/manifest.hpp"
#include "stream/stream_rewriter.hpp"
#include "vm/departure_pages.hpp"
#include "vm/direct_departure.hpp"
#include "vm/peer_reason.hpp"
#include "vm/qemu_migration.hpp"
#include "vm/return_path.hpp"
#include "vm/vm_manager.hpp"
#include "write_tracker/uffd_write_tracker.hpp"

namespace bnf::qemu {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// Rewritten stream bytes travel to the destination as STREAM frames.
class FrameSink final : public ByteSink {
 public:
  explicit FrameSink(transport::Connection& c) : c_(c) { buf_.reserve(kChunk); }
  Status write(std::span<const std::byte> src) override {
    buf_.insert(buf_.end(), src.begin(), src.end());
    kept_.insert(kept_.end(), src.begin(), src.end());
    return buf_.size() >= kChunk ? post() : Status::ok();
  }
  Status flush() override {
    BNF_TRY(post());
    return c_.flush();
  }
  // The destination proves its image complete (base checked) before QEMU gets
  // the device state that lets it run.
  Status before_device_state() override {
    BNF_TRY(post());
    return proto::send_control(c_, proto::FrameType::vm_switch, json::object());
  }
  Status post() {
    if (buf_.empty()) return Status::ok();
    BNF_TRY(proto::send_control(c_, proto::FrameType::stream, json::object(), buf_));
    forwarded_ += buf_.size();
    buf_.clear();
    return Status::ok();
  }
  [[nodiscard]] uint64_t forwarded() const { return forwarded_; }
  // Everything forwarded: with the RAM file it is a complete stream for QEMU
  // (small RAM blocks, device state), kept as the snapshot's device-state blob.
  [[nodiscard]] std::string_view kept() const { return {reinterpret_cast<const char*>(kept_.data()), kept_.size()}; }

 private:
  static constexpr size_t kChunk = 256U << 10;
  std::vector<std::byte> kept_;
  transport::Connection& c_;
  std::vector<std::byte> buf_;
  uint64_t forwarded_ = 0;
};

Result<UniqueFd> accept_within(int lfd, int timeout_ms) {
  pollfd p{lfd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return Status(Errc::io, "QEMU did not connect to the migration socket");
  int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return errno_status("accept migration stream", errno);
  return UniqueFd(fd);
}

// Memory for pages held back until QEMU's next pass (see departure_pages.hpp):
// an eighth of guest RAM, at most 256 MiB.
size_t hold_budget(uint64_t memory_bytes) { return std::min<uint64_t>(memory_bytes / 8, 256ULL << 20); }

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

}  // namespace

namespace {

// The handshake's outcome: how this trip goes, and against which base.
struct Agreement {
  MigrationReport rep;
  DigestKey key{};
  std::optional<DigestTable> base;
  bool direct = false;  // the destination takes our QEMU's own stream (direct trip)
};

// Sends our arrival record (the image the VM had when it came here); the
// destination answers full or incremental against its retained snapshot.
// `stream_token` (not empty) offers a direct trip with QEMU's stream on the
// connection that VM_STREAM names by it.
Result<Agreement> agree(transport::Connection& c, SnapshotStore& store, const VmDefinition& def,
                        const std::string& force_full, const std::string& stream_token) {
  json arrival = nullptr;
  auto m = store.manifest(def.name);
  if (m.is_ok()) arrival = {{"lineage", m->lineage}, {"epoch", m->epoch}, {"root", digest_hex(m->root)}};
  BNF_TRY(proto::send_control(c, proto::FrameType::vm_hello,
                              {{"version", proto::kVersion},
                               {"definition", def.to_json()},
                               {"arrival", arrival},
                               {"force_full", force_full},
                               {"stream_token", stream_token}}));
  BNF_ASSIGN_OR_RETURN(proto::Frame af, proto::expect_frame(c, proto::FrameType::vm_accept));
  BNF_ASSIGN_OR_RETURN(json a, proto::parse_json_meta(af));
  Agreement g;
  BNF_ASSIGN_OR_RETURN(g.rep.mode, proto::field<std::string>(a, "mode"));
  BNF_ASSIGN_OR_RETURN(g.rep.lineage, proto::field<std::string>(a, "lineage"));
  BNF_ASSIGN_OR_RETURN(g.rep.epoch, proto::field<uint64_t>(a, "epoch"));
  BNF_ASSIGN_OR_RETURN(std::string sealed_key, proto::field<std::string>(a, "sealed_key"));
  BNF_ASSIGN_OR_RETURN(g.key, proto::open_digest_key(c, sealed_key));
  g.rep.fallback = printable_peer_text(proto::field_or<std::string>(a, "fallback", ""));
  g.direct = !stream_token.empty() && g.rep.mode == "full" && proto::field_or(a, "direct", false);
  if (g.rep.mode == "incremental") {
    if (!m.is_ok() || m->lineage != g.rep.lineage || m->key != g.key)
      return Status(Errc::protocol, "destination chose incremental against a base this host cannot prove");
    BNF_ASSIGN_OR_RETURN(g.base, store.load_table(*m));
  }
  return g;
}

// Tells the destination the image is complete; its answer (VM_DONE) says the
// VM runs there with exactly that image.
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

// QEMU stops the VM once what is left to send fits in its downtime limit at
// the rate it measures. In an incremental trip that rate is the rate at which
// bnf takes its stream (mostly pages the destination holds: skipped, fast),
// not the wire's: QEMU would stop during its first pass with hundreds of MiB
// left (measured: 690 ms downtime, 1 GiB, 1 Gbit/s). In a full trip it stops
// at the end of its first pass with up to a limit's worth of pages never sent
// (measured: 200-270 ms at 1 GiB, 10 Gbit/s, limit 300 ms). So every trip's
// first pass runs with a limit QEMU cannot meet; from the second pass, where
// what is left is the pages the guest keeps writing, the operator's applies.

// Starts QEMU's migration into a local socket of ours and takes the connection.
// It starts before the handshake (QEMU's set-up overlaps it, its first bytes
// wait in the socket), with a downtime limit it cannot meet (see above).
// `return_path`: on when the trip can relay it (return_path.hpp).
Result<UniqueFd> start_qemu_migration(QmpClient& qmp, const std::string& sock, bool return_path) {
  BNF_ASSIGN_OR_RETURN(UniqueFd lfd, unix_listen(sock, 1));
  BNF_TRY(prepare_qemu_migration(qmp, return_path));  // also after a direct trip's preparation was refused
  BNF_TRY(qmp.execute("migrate", {{"uri", "unix:" + sock}}).status());
  return accept_within(lfd.get(), 10000);
}

void fill_counts(MigrationReport& rep, const DeparturePageCounts& n) {
  rep.pages_fixed_at_switchover = n.fixed_at_switchover;
  rep.pages_sent = n.sent;
  rep.pages_skipped = n.skipped;
  rep.pages_zero = n.zero;
  rep.pages_superseded = n.superseded;
  rep.rounds = n.rounds;
}

// What a trip hands over for the retained snapshot, once the VM runs there.
struct Departed {
  MigrationReport rep;
  DigestTable table;   // the VM's memory at switchover
  std::string stream;  // the stream state kept for a restore (device state)
  json done;           // VM_DONE
  std::optional<json> stop_event;
  // Set where `table` is still being made: run once the VM runs there and
  // before our QEMU quits, while the RAM it hashes is still QEMU's and the
  // trip's digester still lives.
  std::function<void(Departed&)> complete;
};

// A direct trip's table, completed with what its check left for after the
// downtime; the roots are compared then.
std::function<void(Departed&)> complete_direct_table(std::shared_ptr<DepartureTableRest> rest, const PageDigester& h,
                                                     const Logger& log, const std::string& name) {
  return [rest = std::move(rest), h, &log, name](Departed& d) {
    d.table = rest->table();
    const LiveDigestCounts& n = rest->counts();
    d.rep.pages_hashed_after_settle = n.hashed_after;
    d.rep.phases["rehash_after_settle_s"] = n.hashed_after_s;
    d.rep.destination_differs = proto::field_or<std::string>(d.done, "root", "") != digest_hex(d.table.root(h));
    if (d.rep.destination_differs)
      log.error(
          "vm {}: the destination resumed with an image that is not the stopped VM, in pages the guest did not "
          "write during the trip (compared after the downtime); its trip back will be full",
          name);
  };
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

struct TripContext {
  QmpClient& qmp;
  transport::Connection& c;
  Agreement& g;
  const VmDefinition& def;
  const std::string& ram_file;
  const WarmRam* warm;  // the VM's RAM as kept while it ran here, if it could be mapped
  int qemu_pid;
  const MigrateOptions& opt;
  const std::function<void(const json&)>& progress;
  const Logger& log;
  Clock::time_point t0;
  bool return_path = false;  // relayed trips: QEMU's return path is on and relayed
  bool check = false;        // the switchover check is on (MigrateOptions::switchover_check; auto: TCG VMs)
  // The switchover check's write tracker; null if none (`no_tracker` says
  // why). The trip takes it.
  std::unique_ptr<WriteTracker> tracker;
  std::string no_tracker;
  uint64_t read_before_tracking = 0;  // pages [0, this) QEMU may have read before the tracker started
};

// Pages [0, N) include every page of the VM's RAM QEMU has read so far: its
// first pass walks each RAM block from its first page up, and counts a page
// (normal or zero) as it takes it, before or as it reads it (a normal page's
// bytes go out later, from a queue), so N is QEMU's count plus the page in
// hand; the margin is generous. Unknown (or the VM already stopped): all.
uint64_t pages_read_so_far(QmpClient& qmp) {
  constexpr uint64_t kMargin = 1024;
  auto m = qmp.execute_unless_event("query-migrate", nullptr, "STOP");
  if (!m.is_ok() || !*m) return UINT64_MAX;
  const json ram = (*m)->value("ram", json::object());
  return ram.value("normal", uint64_t{0}) + ram.value("duplicate", uint64_t{0}) + kMargin;
}

// The VM's RAM as the switchover check reads it: the warm mapping kept while
// it ran here, or one of its own; and the file (its holes are zero pages).
struct RamView {
  Mapping own;  // empty when the warm mapping serves
  std::span<const std::byte> bytes;
  UniqueFd file;
};

Result<RamView> view_ram(const TripContext& x) {
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(x.ram_file, O_RDONLY));
  if (x.warm != nullptr) return RamView{Mapping(), x.warm->bytes(), std::move(fd)};
  BNF_ASSIGN_OR_RETURN(Mapping map, map_file(fd.get(), x.def.memory_bytes, false));
  const std::span<const std::byte> bytes = map.bytes();
  return RamView{std::move(map), bytes, std::move(fd)};
}

// Tracks QEMU's writes to the VM's RAM from now on.
Result<std::unique_ptr<WriteTracker>> start_write_tracker(const std::string& ram_file, int qemu_pid,
                                                          const VmDefinition& def) {
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(ram_file, O_RDONLY));
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<UffdWriteTracker> t,
                       UffdWriteTracker::start(qemu_pid, fd.get(), def.memory_bytes / 4096));
  return std::unique_ptr<WriteTracker>(std::move(t));
}

// What the switchover check reports: how it knew which pages to hash again.
void report_check(MigrationReport& rep, const TripContext& x, uint64_t hashed_at_stop, bool tracked,
                  const std::string& why_not) {
  rep.pages_hashed_at_stop = hashed_at_stop;
  rep.write_tracker = tracked ? "uffd-wp" : "none: " + why_not;
  if (!tracked)
    x.log.info("vm {}: the switchover check hashed {} pages in the downtime: QEMU's writes were not tracked: {}",
               x.def.name, hashed_at_stop, why_not);
}

// A relayed trip's progress, a tick of its page filter: the operator's
// downtime limit from QEMU's second pass, and a progress line twice a second.
std::function<void(const DeparturePageCounts&)> relay_ticker(TripContext& x, const std::string& mode,
                                                             uint64_t pages_total, const FdSource& src) {
  return [&x, mode, pages_total, &src, limit_set = false, t = Clock::now()](const DeparturePageCounts& n) mutable {
    if (!limit_set && n.rounds >= 2) {
      limit_set = true;
      // Not awaited: QEMU may have entered its final pass, whose writes to our
      // socket hold the lock QMP needs, and we read that socket (awaited, it
      // stalled for the QMP timeout).
      Status r = x.qmp.send("migrate-set-parameters", {{"downtime-limit", x.opt.downtime_limit_ms}});
      if (!r.is_ok()) x.log.warn("vm {}: cannot set the downtime limit: {}", x.def.name, r.message());
    }
    if (!x.progress || since(t) < 0.5) return;
    t = Clock::now();
    x.progress({{"seconds", since(x.t0)},
                {"mode", mode},
                {"round", n.rounds},
                {"pages_total", pages_total},
                {"pages_seen", n.sent + n.skipped + n.zero},
                {"pages_sent", n.sent},
                {"pages_skipped", n.skipped},
                {"wire_bytes", x.c.stats().bytes_sent},
                {"stream_bytes", src.consumed()}});
  };
}

// After a relayed trip's stream: what QEMU and the page filter say about it.
void report_relay(Departed& d, TripContext& x, const DeparturePages& pages, bool tracked) {
  MigrationReport& rep = d.rep;
  auto stopped = x.qmp.wait_event("STOP", std::chrono::seconds(1));
  if (stopped.is_ok()) d.stop_event = *stopped;
  auto info = x.qmp.execute("query-migrate");
  if (info.is_ok()) rep.source_downtime_ms = info->value("downtime", 0.0);
  const DeparturePageCounts& n = pages.counts();
  rep.phases["digest_s"] = n.digest_s;
  rep.phases["page_send_s"] = n.send_s;
  rep.phases["final_section_s"] = n.final_section_s;
  rep.phases["rehash_wait_s"] = n.rehash_wait_s;
  if (x.check)
    report_check(rep, x, n.hashed_at_stop, tracked && n.tracker_error.empty(),
                 !tracked ? x.no_tracker : "the write tracker failed at the stop: " + n.tracker_error);
  fill_counts(rep, n);
}

// Relayed trip: QEMU's stream through this daemon's codec and page filter.
Result<Departed> relay_trip(TripContext& x, UniqueFd qfd, Clock::time_point t_stream) {
  Departed d;
  d.rep = x.g.rep;
  MigrationReport& rep = d.rep;
  const PageDigester h(x.g.key);
  const uint64_t pages_total = x.def.memory_bytes / 4096;
  std::optional<RamView> ram_view;  // the switchover check reads the VM's RAM file
  if (x.check) {
    BNF_ASSIGN_OR_RETURN(ram_view, view_ram(x));
  }
  const bool tracked = x.tracker != nullptr;
  // Page faults belong in the first pass, not in the downtime: the re-hash of
  // the whole RAM at the stop would otherwise fault in what the warm mapping
  // has not (~60 ms per GiB here). With QEMU's writes tracked, it reads few pages.
  Prefault prefault(ram_view && !tracked ? ram_view->bytes : std::span<const std::byte>(),
                    {.file = ram_view ? ram_view->file.get() : -1});
  DeparturePages pages(x.c, h, std::move(x.g.base), pages_total,
                       {.incremental = rep.mode == "incremental",
                        .hold_budget_bytes = hold_budget(x.def.memory_bytes),
                        .hot_window = kQemuHotWindow,
                        .switchover_check = ram_view ? ram_view->bytes : std::span<const std::byte>(),
                        .ram_file = ram_view ? ram_view->file.get() : -1,
                        .write_tracker = std::move(x.tracker)});
  FdSource src(qfd.get());
  uint64_t return_path_bytes = 0;
  if (x.return_path)
    src.also_watch(
        x.c.socket_fd(), [&] { return forward_return_path(x.c, qfd.get(), return_path_bytes); },
        [&] { return x.c.has_pending_input(); });
  pages.on_tick(relay_ticker(x, rep.mode, pages_total, src));
  FrameSink sink(x.c);
  StreamRewriter rw(src, sink, pages);
  BNF_TRY(rw.run());
  rep.phases["qemu_stream_s"] = since(t_stream);  // QEMU's passes, parsed, filtered and sent as they came
  const auto t_finish = Clock::now();
  BNF_ASSIGN_OR_RETURN(d.done, await_arrival(x.c, pages.departure().root(h)));
  rep.phases["destination_finish_s"] = since(t_finish);  // tail landed, device state loaded, arrival committed
  report_relay(d, x, pages, tracked);
  rep.pages_total = pages_total;
  rep.stream_bytes_in = rw.stats().bytes_in;
  rep.stream_bytes_forwarded = sink.forwarded();
  rep.return_path_bytes = return_path_bytes;
  d.table = pages.departure();
  d.stream = std::string(sink.kept());
  return d;
}

// Direct trip (full, over TCP): QEMU streams to the destination itself; this
// daemon watches, re-hashes the stopped VM and settles the destination's image.
Result<Departed> direct_trip(TripContext& x, const Endpoint& to, unsigned peer_timeout_ms) {
  Departed d;
  d.rep = x.g.rep;
  const PageDigester h(x.g.key);
  // Faulted in while the VM ran here (WarmRam) and, for what that did not
  // reach, during the first pass only while CPU is idle (depart_direct): a full
  // trip's first pass can be CPU-bound (faulting during it cost ~3% of the time
  // at 1 GiB, 10 Gbit/s).
  BNF_ASSIGN_OR_RETURN(RamView view, view_ram(x));
  const auto ram = std::make_shared<const RamView>(std::move(view));  // the table's rest may outlive this call
  const bool check = x.check;
  const auto t_stream = Clock::now();
  BNF_ASSIGN_OR_RETURN(DirectDeparture dd, depart_direct(x.qmp, x.c, h,
                                                         {.destination = to.to_string(),
                                                          .downtime_limit_ms = x.opt.downtime_limit_ms,
                                                          .peer_timeout_ms = peer_timeout_ms,
                                                          .ram = ram->bytes,
                                                          .ram_file = ram->file.get(),
                                                          .ram_owner = ram,
                                                          .qemu_pid = x.qemu_pid,
                                                          .switchover_check = check,
                                                          .check_all_before_resume = x.opt.check_all_before_resume,
                                                          .tracker = std::move(x.tracker),
                                                          .no_tracker = x.no_tracker,
                                                          .read_before_tracking = x.read_before_tracking,
                                                          .progress = x.progress}));
  MigrationReport& rep = d.rep;
  rep.phases["qemu_stream_s"] = since(t_stream);
  rep.phases["stop_seen_s"] = dd.stop_seen_s;
  const size_t warm_bytes = x.warm ? x.warm->faulted_in() : 0;
  x.log.info("vm {}: RAM ({} MiB) faulted in before the stop: {} MiB while it ran here, {} MiB during the trip",
             x.def.name, x.def.memory_bytes >> 20, warm_bytes >> 20, (dd.rehash_counts.faulted_in * 4096) >> 20);
  if (dd.stop_limit_ms > 0)
    x.log.info(
        "vm {}: QEMU's first pass was held back by the link; a downtime limit of {} ms (what the guest "
        "dirtied, at the link's rate, plus {:.0f} ms) stopped it as the pass ended",
        x.def.name, dd.stop_limit_ms, dd.tail_ms);
  else if (!dd.held_back_by.empty())
    x.log.info(
        "vm {}: QEMU's first pass was held back by the {} (its migration thread waited for a CPU {:.0f}% "
        "of the time): it stopped with {:.0f} ms of it left",
        x.def.name, dd.held_back_by == "cpu" ? "CPUs" : "link", 100 * dd.qemu_cpu_wait, dd.tail_ms);
  rep.first_pass_held_back_by = dd.held_back_by;
  rep.qemu_cpu_wait = dd.qemu_cpu_wait;
  rep.phases["rehash_s"] = dd.rehash_s;
  if (check) {
    const LiveDigestCounts& n = dd.rehash_counts;
    report_check(rep, x, n.hashed_at_stop, n.tracked, n.not_tracked_because);
    if (n.tracked)
      x.log.info(
          "vm {}: the switchover check hashed {} pages in the downtime (written, or read by QEMU before the "
          "tracker started); {} were holes in the RAM file",
          x.def.name, n.hashed_at_stop, n.holes);
  }
  if (dd.rest) d.complete = complete_direct_table(dd.rest, h, x.log, x.def.name);
  rep.phases["settle_s"] = dd.settle_s;
  const json ram_stats = dd.qemu_stats.value("ram", json::object());
  rep.pages_total = x.def.memory_bytes / 4096;
  rep.pages_sent = ram_stats.value("normal", 0ULL);
  rep.pages_zero = ram_stats.value("duplicate", 0ULL);
  rep.rounds = ram_stats.value("dirty-sync-count", 0ULL);
  rep.pages_fixed_at_switchover = dd.pages_resent;
  rep.stream_bytes_in = ram_stats.value("transferred", 0ULL);
  rep.source_downtime_ms = dd.qemu_stats.value("downtime", 0.0);
  rep.direct = true;
  rep.destination_differs = dd.unchecked_differs;
  if (dd.unchecked_differs)
    x.log.warn(
        "vm {}: the destination resumed with an image that is not the stopped VM (QEMU lost writes; the "
        "switchover check was off); its trip back will be full",
        x.def.name);
  d.table = std::move(dd.table);
  d.stream = std::move(dd.stream_kept);
  d.done = std::move(dd.done);
  d.stop_event = std::move(dd.stop_event);
  return d;
}

// A VM's warm-RAM walks, paused for a trip and resumed if the VM stays here.
class WalksPaused {
 public:
  explicit WalksPaused(WarmRam* w) : warm(w) {
    if (warm) warm->pause_walks();
  }
  ~WalksPaused() {
    if (warm) warm->resume_walks();
  }
  WalksPaused(const WalksPaused&) = delete;
  WalksPaused& operator=(const WalksPaused&) = delete;
  WarmRam* warm;
};

// The switchover check learns from QEMU's writes which pages it need not
// hash again at the stop (UffdWriteTracker): a page nothing wrote since the
// tracker started and QEMU read after that is as QEMU read it. Direct trips
// track by default (their check hashes the RAM itself), armed as the pass
// begins, beside the handshake (read_before_tracking); relayed ones only if
// asked (measured slower, see stream-mode-design), before `migrate`.
class TripWriteTracker {
 public:
  TripWriteTracker(bool check, MigrateOptions::TrackWrites mode, bool direct, std::string ram_file, int qemu_pid,
                   const VmDefinition& def)
      : wanted_(check && mode != MigrateOptions::TrackWrites::off &&
                (direct || mode == MigrateOptions::TrackWrites::on)),
        ram_file_(std::move(ram_file)),
        qemu_pid_(qemu_pid),
        def_(def),
        why_not_(mode == MigrateOptions::TrackWrites::off ? "off (--write-tracker off)"
                                                          : "not in relayed trips unless asked (--write-tracker on)") {}

  void start() {
    if (!wanted_) return;
    const auto t = Clock::now();
    Result<std::unique_ptr<WriteTracker>> started = start_write_tracker(ram_file_, qemu_pid_, def_);
    start_s_ = since(t);
    if (started.is_ok())
      tracker_ = std::move(*started);
    else
      why_not_ = started.status().message();
  }
  [[nodiscard]] bool wanted() const { return wanted_; }
  [[nodiscard]] bool tracking() const { return tracker_ != nullptr; }
  [[nodiscard]] double start_s() const { return start_s_; }
  [[nodiscard]] const std::string& why_not() const { return why_not_; }
  [[nodiscard]] std::unique_ptr<WriteTracker> take() { return std::move(tracker_); }

 private:
  bool wanted_;
  std::string ram_file_;
  int qemu_pid_;
  const VmDefinition& def_;
  std::string why_not_;
  double start_s_ = 0;
  std::unique_ptr<WriteTracker> tracker_;
};

struct Handshake {
  std::unique_ptr<transport::Connection> c;
  Agreement g;
};

// How a trip begins on the source. Direct: the handshake and QEMU's own
// stream connection (stream_rendezvous.hpp) start at once, beside QMP's
// preparation. Relayed: the handshake starts beside the tracker's start and
// `migrate`, and QEMU's first bytes wait in our socket meanwhile.
class TripStart {
 public:
  using Shake = std::function<Result<Handshake>()>;
  using OpenStream = std::function<Result<std::unique_ptr<StreamTunnel>>()>;
  TripStart(bool direct, Shake shake, const OpenStream& open_stream, TripWriteTracker& writes)
      : direct_(direct), shake_(std::move(shake)), writes_(writes) {
    if (!direct_) return;
    early_ = std::async(std::launch::async, shake_);
    stream_ = std::async(std::launch::async, open_stream);
  }

  // QEMU's migration starts; `relay_socket` and `return_path` for relayed trips.
  Status begin(QmpClient& qmp, const std::string& relay_socket, bool return_path, Clock::time_point t0) {
    if (direct_) return begin_direct(qmp, t0);
    early_ = std::async(std::launch::async, shake_);
    writes_.start();
    BNF_ASSIGN_OR_RETURN(qfd_, start_qemu_migration(qmp, relay_socket, return_path));
    migrate_issued_s_ = since(t0);
    return Status::ok();
  }
  Result<Handshake> handshake() { return early_.get(); }
  // A direct trip's tracker starts after QEMU's pass began (arming takes ~20
  // ms per GiB): what QEMU read by then is compared at the stop whatever the
  // tracker says.
  uint64_t read_before_tracking(QmpClient& qmp) {
    if (!tracking_.valid()) return 0;
    tracking_.get();
    return writes_.tracking() ? pages_read_so_far(qmp) : 0;
  }
  [[nodiscard]] double migrate_issued_s() const { return migrate_issued_s_; }
  UniqueFd take_qemu_socket() { return std::move(qfd_); }
  void close_stream() { tunnel_.reset(); }

 private:
  Status begin_direct(QmpClient& qmp, Clock::time_point t0) {
    BNF_TRY(prepare_qemu_migration(qmp, true));
    BNF_ASSIGN_OR_RETURN(tunnel_, stream_.get());
    BNF_TRY(start_direct_migration(qmp, tunnel_->take_local_end()));
    migrate_issued_s_ = since(t0);
    // Arming stops QEMU's main thread and holds its mmap lock (~20 ms per
    // GiB): beside QMP's preparation it stalled that (`migrate` 48-66 ms
    // after the command instead of 10-25), and beside the pass's setup it
    // held back the pass's first bytes by as long (see await_pass_started):
    // it goes once the pass is under way.
    if (writes_.wanted()) BNF_TRY(await_pass_started(qmp));
    tracking_ = std::async(std::launch::async, [this] { writes_.start(); });
    return Status::ok();
  }

  bool direct_;
  Shake shake_;
  TripWriteTracker& writes_;
  double migrate_issued_s_ = 0;
  std::future<Result<Handshake>> early_;
  std::future<void> tracking_;  // a direct trip's tracker, armed once QEMU's pass is under way
  std::future<Result<std::unique_ptr<StreamTunnel>>> stream_;
  std::unique_ptr<StreamTunnel> tunnel_;  // relays QEMU's stream until the trip is over
  UniqueFd qfd_;                          // a relayed trip's QEMU stream socket
};

void log_departure(const Logger& log, const std::string& name, const Endpoint& to, const MigrationReport& rep) {
  log.info("vm {}: migrated to {} ({}{}, {} pages sent, {} skipped)", name, to.to_string(), rep.mode,
           rep.direct ? ", direct" : "", rep.pages_sent, rep.pages_skipped);
  if (rep.pages_fixed_at_switchover != 0)
    log.warn("vm {}: QEMU did not resend {} changed pages; the switchover check sent them", name,
             rep.pages_fixed_at_switchover);
}

}  // namespace

Result<MigrationReport> VmManager::migrate(const std::string& name, const Endpoint& to, const MigrateOptions& opt,
                                           const std::function<void(const json&)>& progress) {
  auto r = migrate_once(name, to, opt, progress, "");
  if (r.is_ok() || r.status().code() != Errc::base_changed || !r.status().from_peer()) return r;
  // The destination found that its retained snapshot no longer holds the bytes
  // its table says (checked during the trip): the VM runs here still; go again,
  // asking for a full trip. The report's fallback says why.
  const std::string why(r.status().peer_reason());
  log_.warn("vm {}: {}; trying again with a full trip", name, why);
  return migrate_once(name, to, opt, progress, why);
}

// Marks a VM that runs here busy for its departure (the caller's BusyGuard
// clears it); status requests and incoming trips of other VMs go on meanwhile.
Result<VmManager::Vm*> VmManager::reserve_departure(const std::string& name) {
  std::lock_guard lk(mu_);
  BNF_ASSIGN_OR_RETURN(Vm * vm, find(name));
  if (vm->busy) return Status(Errc::busy, "VM '" + name + "' is being migrated already");
  if (!vm->proc || !vm->proc->running()) return Status(Errc::invalid_argument, "VM '" + name + "' is not running here");
  vm->busy = true;
  return vm;
}

Result<MigrationReport> VmManager::migrate_once(const std::string& name, const Endpoint& to, const MigrateOptions& opt,
                                                const std::function<void(const json&)>& progress,
                                                const std::string& force_full) {
  const auto t0 = Clock::now();
  const double t0_wall = QmpClient::wall_now();
  BNF_ASSIGN_OR_RETURN(Vm * vm, reserve_departure(name));
  BusyGuard busy(mu_, *vm);
  WalksPaused walks(vm->warm.get());
  // No arrival record: the trip is full, and may go direct: QEMU's stream
  // starts on a connection of its own while the handshake runs beside it
  // (stream_rendezvous.hpp). Otherwise QEMU's migration into our socket starts
  // first and its first bytes wait there during the handshake.
  const bool offer_direct = opt.direct && transport_.capabilities().pollable && !store_.manifest(name).is_ok();
  std::string stream_token;
  if (offer_direct) stream_token = to_hex(random_digest_key());  // 256 random bits name the stream
  auto handshake = [&]() -> Result<Handshake> {
    BNF_ASSIGN_OR_RETURN(std::unique_ptr<transport::Connection> conn, transport_.connect(to));
    BNF_ASSIGN_OR_RETURN(Agreement g, agree(*conn, store_, vm->def, force_full, stream_token));
    return Handshake{std::move(conn), std::move(g)};
  };
  const bool check = opt.switchover_check.value_or(vm->def.accel == "tcg");
  TripWriteTracker writes(check, opt.track_writes, offer_direct, vm->ram_file, vm->proc->pid(), vm->def);
  TripStart start(
      offer_direct, handshake, [&] { return open_direct_stream(to, stream_token, transport_, peer_timeout_ms_); },
      writes);
  auto qmp_connected = QmpClient::connect(paths(name, vm->ram_file).qmp_socket, std::chrono::seconds(5));
  if (!qmp_connected.is_ok()) return qmp_connected.status();  // the destination drops what the start began
  QmpClient qmp = std::move(*qmp_connected);
  auto fail_here = [&](const Status& st) {
    start.close_stream();  // a QEMU blocked writing its stream fails its migration and runs on
    keep_running_here(qmp, log_, name);
    return st.context("migration of " + name + " failed, the VM keeps running here");
  };
  const auto t_stream = Clock::now();
  // The return path is relayed where both daemons can wait on the bnf
  // connection's socket beside QEMU's (return_path.hpp).
  const bool return_path = transport_.capabilities().pollable;
  Status started = start.begin(qmp, vm_dir(name) + "/migrate.sock", return_path, t0);
  if (!started.is_ok()) return fail_here(started);  // the handshake is waited for as it goes
  Result<Handshake> shaken = start.handshake();
  if (!shaken.is_ok()) return fail_here(shaken.status());
  std::unique_ptr<transport::Connection> c = std::move(shaken->c);
  Agreement& agreed = shaken->g;
  agreed.rep.phases["handshake_s"] = since(t0);
  agreed.rep.phases["migrate_issued_s"] = start.migrate_issued_s();
  if (offer_direct && !agreed.direct)
    return fail_here(Status(Errc::protocol, "the destination did not take QEMU's direct stream"));
  const uint64_t read_before_tracking = start.read_before_tracking(qmp);
  if (writes.start_s() > 0) agreed.rep.phases["write_tracker_start_s"] = writes.start_s();
  TripContext x{qmp,
                *c,
                agreed,
                vm->def,
                vm->ram_file,
                vm->warm.get(),
                vm->proc->pid(),
                opt,
                progress,
                log_,
                t0,
                return_path && c->capabilities().pollable,
                check,
                writes.take(),
                writes.why_not(),
                read_before_tracking};
  Result<Departed> trip =
      offer_direct ? direct_trip(x, to, peer_timeout_ms_) : relay_trip(x, start.take_qemu_socket(), t_stream);
  if (!trip.is_ok()) return fail_here(peer_reason(*c, trip.status()));
  report_arrival(*trip, t0_wall);
  MigrationReport& rep = trip->rep;

  // Switched over: the VM runs there. Our RAM file becomes the retained snapshot.
  if (trip->complete) trip->complete(*trip);  // before the quit: see Departed::complete
  BNF_TRY(keep_departure(*vm, to, qmp, agreed.key, trip->table, trip->stream, rep, walks.warm));
  const auto cs = c->stats();
  rep.wire_bytes = cs.bytes_sent + cs.bytes_received + (rep.direct ? rep.stream_bytes_in : 0);
  rep.seconds = since(t0);
  log_departure(log_, name, to, rep);
  return rep;
}

// The VM runs on `to` now: our QEMU quits and its RAM file becomes the
// retained snapshot, with the departure's table and device state.
// `paused` (the VM's warm mapping, its walks paused for the trip) is cleared
// as the mapping goes with the VM.
Status VmManager::keep_departure(Vm& vm, const Endpoint& to, QmpClient& qmp, const DigestKey& key,
                                 const DigestTable& table, const std::string& stream, MigrationReport& rep,
                                 WarmRam*& paused) {
  const std::string& name = vm.def.name;
  const auto t_commit = Clock::now();
  (void)qmp.execute("quit");
  if (!vm.proc->wait(std::chrono::seconds(10)).is_ok()) vm.proc->kill();
  BNF_ASSIGN_OR_RETURN(Manifest dep, store_.commit_departure(name, vm.ram_file, rep.lineage, rep.epoch, key, table,
                                                             to.to_string(), stream));
  {
    std::lock_guard relock(mu_);
    vm.proc.reset();
    paused = nullptr;
    vm.warm.reset();
    vm.ram_file = store_.image_path(dep);
    vm.where = to.to_string();
    BNF_TRY(save(vm));
  }
  rep.phases["source_commit_s"] = since(t_commit);
  // QEMU's pass allocated every page of the RAM file on its way: the zero
  // pages go back to the host (not part of the commit: if it fails, the
  // snapshot is whole, only larger).
  const auto t_release = Clock::now();
  if (Result<uint64_t> released = store_.release_zero_pages(dep, table); released.is_ok())
    rep.snapshot_bytes_released = *released;
  else
    log_.warn("vm {}: the retained snapshot keeps its zero pages: {}", name, released.status().message());
  rep.phases["release_zero_pages_s"] = since(t_release);
  return Status::ok();
}

}  // namespace bnf::qemu
