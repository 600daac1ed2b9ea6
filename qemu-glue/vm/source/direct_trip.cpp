#include "vm/source/direct_trip.hpp"

#include <memory>

#include "common/elapsed.hpp"
#include "common/page.hpp"
#include "protocol/control.hpp"
#include "vm/source/direct_departure.hpp"

namespace bnf::qemu {

using nlohmann::json;

namespace {

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

// Where the first pass's time and the RAM's faults went.
void log_first_pass(const TripContext& x, const DirectDeparture& dd) {
  const size_t warm_bytes = x.warm ? x.warm->faulted_in() : 0;
  x.log.info("vm {}: RAM ({} MiB) faulted in before the stop: {} MiB while it ran here, {} MiB during the trip",
             x.def.name, x.def.memory_bytes >> 20, warm_bytes >> 20, (dd.rehash_counts.faulted_in * kPageSize) >> 20);
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
}

// What the switchover check did in the downtime.
void report_direct_check(MigrationReport& rep, const TripContext& x, const LiveDigestCounts& n) {
  report_check(rep, x, n.hashed_at_stop, n.tracked, n.not_tracked_because);
  if (n.tracked)
    x.log.info(
        "vm {}: the switchover check hashed {} pages in the downtime (written, or read by QEMU before the "
        "tracker started); {} were holes in the RAM file",
        x.def.name, n.hashed_at_stop, n.holes);
}

// QEMU's own figures: it sent the pages, not this daemon.
void report_qemu_pass(MigrationReport& rep, const TripContext& x, const DirectDeparture& dd) {
  const json ram_stats = dd.qemu_stats.value("ram", json::object());
  rep.pages_total = x.def.memory_bytes / kPageSize;
  rep.pages_sent = ram_stats.value("normal", 0ULL);
  rep.pages_zero = ram_stats.value("duplicate", 0ULL);
  rep.rounds = ram_stats.value("dirty-sync-count", 0ULL);
  rep.pages_fixed_at_switchover = dd.pages_resent;
  rep.stream_bytes_in = ram_stats.value("transferred", 0ULL);
  rep.source_downtime_ms = dd.qemu_stats.value("downtime", 0.0);
  rep.direct = true;
  rep.first_pass_held_back_by = dd.held_back_by;
  rep.qemu_cpu_wait = dd.qemu_cpu_wait;
}

// QEMU's pass to its stop, the re-hash and the settle (depart_direct).
Result<DirectDeparture> depart(TripContext& x, const PageDigester& h, const Endpoint& to, unsigned peer_timeout_ms) {
  // Faulted in while the VM ran here (WarmRam) and, for what that did not
  // reach, during the first pass only while CPU is idle (depart_direct): a full
  // trip's first pass can be CPU-bound (faulting during it cost ~3% of the time
  // at 1 GiB, 10 Gbit/s).
  BNF_ASSIGN_OR_RETURN(RamView view, view_ram(x));
  const auto ram = std::make_shared<const RamView>(std::move(view));  // the table's rest may outlive this call
  return depart_direct(x.qmp, x.c, h,
                       {.destination = to.to_string(),
                        .downtime_limit_ms = x.opt.downtime_limit_ms,
                        .peer_timeout_ms = peer_timeout_ms,
                        .ram = ram->bytes,
                        .ram_file = ram->file.get(),
                        .ram_owner = ram,
                        .qemu_pid = x.qemu_pid,
                        .switchover_check = x.check,
                        .check_all_before_resume = x.opt.check_all_before_resume,
                        .tracker = std::move(x.tracker),
                        .no_tracker = x.no_tracker,
                        .read_before_tracking = x.read_before_tracking,
                        .progress = x.progress});
}

}  // namespace

Result<Departed> direct_trip(TripContext& x, const Endpoint& to, unsigned peer_timeout_ms) {
  Departed d;
  d.rep = x.g.rep;
  MigrationReport& rep = d.rep;
  const PageDigester h(x.g.key);
  const auto t_stream = Clock::now();
  BNF_ASSIGN_OR_RETURN(DirectDeparture dd, depart(x, h, to, peer_timeout_ms));
  rep.phases["qemu_stream_s"] = since(t_stream);
  rep.phases["stop_seen_s"] = dd.stop_seen_s;
  rep.phases["rehash_s"] = dd.rehash_s;
  rep.phases["settle_s"] = dd.settle_s;
  log_first_pass(x, dd);
  if (x.check) report_direct_check(rep, x, dd.rehash_counts);
  if (dd.rest) d.complete = complete_direct_table(dd.rest, h, x.log, x.def.name);
  report_qemu_pass(rep, x, dd);
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

}  // namespace bnf::qemu
