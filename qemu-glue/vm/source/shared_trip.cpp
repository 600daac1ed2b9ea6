#include "vm/source/shared_trip.hpp"

#include "common/elapsed.hpp"
#include "common/page.hpp"
#include "vm/source/relayed_trip.hpp"
#include "vm/source/shared_rounds.hpp"

namespace bnf::qemu {

namespace {

// Against a base, round 0 is what the guest wrote since it arrived, where this
// host's tracker has watched it since then; otherwise a digest scan finds it.
Result<Round0Source> round0_source(const Agreement& g, const SharedTracking& t) {
  Round0Source r;
  if (!g.base) {
    r.tracker = "full trip";
    return r;
  }
  if (t.since_arrival != nullptr && t.since_arrival->is_of(g.rep.lineage, g.base_epoch)) {
    r.taken_at = std::chrono::steady_clock::now();
    BNF_ASSIGN_OR_RETURN(r.changed, t.since_arrival->since_arrival());
    r.tracker = "since arrival";
    return r;
  }
  r.tracker = "lost, digest scan";
  r.tracker_lost =
      t.since_arrival != nullptr ? "it was armed for another image than the destination's" : t.lost_because;
  return r;
}

}  // namespace

Result<Departed> shared_trip(TripContext& x, const SharedTracking& t, const StartSharedQemu& start) {
  BNF_ASSIGN_OR_RETURN(RamView ram, view_ram(x));
  const PageDigester h(x.g.key);
  BNF_ASSIGN_OR_RETURN(Round0Source from, round0_source(x.g, t));
  SharedRounds rounds(x.c, ram.bytes, ram.file.get(), t.tracker, h, std::move(x.g.base), std::move(from),
                      {.downtime_ms = static_cast<double>(x.opt.downtime_limit_ms), .max_rounds = x.opt.max_rounds});
  const uint64_t pages_total = x.def.memory_bytes / kPageSize;
  BNF_TRY(rounds.precopy([&x, pages_total](const SharedRoundCounts& n) {
    if (!x.progress) return;
    x.progress({{"seconds", since(x.t0)},
                {"mode", x.g.rep.mode},
                {"ram_mode", "shared"},
                {"round", n.rounds},
                {"pages_total", pages_total},
                {"pages_seen", pages_total},
                {"pages_sent", n.pages_sent},
                {"wire_bytes", x.c.stats().bytes_sent}});
  }));
  const auto t_stream = Clock::now();
  BNF_ASSIGN_OR_RETURN(UniqueFd qfd, start());
  return relay_trip(x, std::move(qfd), t_stream, &rounds);
}

}  // namespace bnf::qemu
