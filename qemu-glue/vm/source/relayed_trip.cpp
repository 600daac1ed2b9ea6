#include "vm/source/relayed_trip.hpp"

#include <optional>
#include <vector>

#include "common/elapsed.hpp"
#include "common/page.hpp"
#include "common/prefault.hpp"
#include "protocol/control.hpp"
#include "stream/stream_io.hpp"
#include "stream/stream_rewriter.hpp"
#include "vm/source/departure_pages.hpp"
#include "vm/trip/return_path.hpp"

namespace bnf::qemu {

using nlohmann::json;

namespace {

// Rewritten stream bytes travel to the destination as STREAM frames.
class FrameSink final : public ByteSink {
 public:
  // `before_switch`: runs once the device state begins (the VM is stopped),
  // before VM_SWITCH.
  FrameSink(transport::Connection& c, std::function<Status()> before_switch)
      : c_(c), before_switch_(std::move(before_switch)) {
    buf_.reserve(kChunk);
  }
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
    if (before_switch_) BNF_TRY(before_switch_());
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
  std::function<Status()> before_switch_;
  std::vector<std::byte> buf_;
  uint64_t forwarded_ = 0;
};

// Memory for pages held back until QEMU's next pass (see departure_pages.hpp):
// an eighth of guest RAM, at most 256 MiB.
size_t hold_budget(uint64_t memory_bytes) { return std::min<uint64_t>(memory_bytes / 8, 256ULL << 20); }

void fill_counts(MigrationReport& rep, const DeparturePageCounts& n) {
  rep.pages_fixed_at_switchover = n.fixed_at_switchover;
  rep.pages_sent = n.sent;
  rep.pages_skipped = n.skipped;
  rep.pages_zero = n.zero;
  rep.pages_superseded = n.superseded;
  rep.rounds = n.rounds;
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

// Shared mode: the rounds' pages join QEMU's small blocks' in the counts.
void add_shared(MigrationReport& rep, const SharedRounds& shared) {
  const SharedRoundCounts& n = shared.counts();
  rep.pages_sent += n.pages_sent;
  rep.pages_zero += n.pages_zero;
  rep.pages_skipped += shared.pages_skipped();
  rep.shared = shared.report();
  rep.phases["shared_precopy_s"] = n.precopy_s;
  rep.phases["shared_final_round_s"] = n.final_s;
}

}  // namespace

Result<Departed> relay_trip(TripContext& x, UniqueFd qfd, Clock::time_point t_stream, SharedRounds* shared) {
  Departed d;
  d.rep = x.g.rep;
  MigrationReport& rep = d.rep;
  const PageDigester h(x.g.key);
  const uint64_t pages_total = x.def.memory_bytes / kPageSize;
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
  // Shared mode: the rounds keep the base; the stream has no main-block page.
  DeparturePages pages(x.c, h, shared ? std::optional<DigestTable>() : std::move(x.g.base), pages_total,
                       {.incremental = !shared && rep.mode == "incremental",
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
  FrameSink sink(
      x.c, shared ? std::function<Status()>([shared] { return shared->final_round(); }) : std::function<Status()>());
  StreamRewriter rw(src, sink, pages);
  if (shared) rw.allow_ignore_shared();
  BNF_TRY(rw.run());
  rep.phases["qemu_stream_s"] = since(t_stream);  // QEMU's passes, parsed, filtered and sent as they came
  const auto t_finish = Clock::now();
  const DigestTable& table = shared ? shared->table() : pages.departure();
  BNF_ASSIGN_OR_RETURN(d.done, await_arrival(x.c, table.root(h)));
  rep.phases["destination_finish_s"] = since(t_finish);  // tail landed, device state loaded, arrival committed
  report_relay(d, x, pages, tracked);
  rep.pages_total = pages_total;
  rep.stream_bytes_in = rw.stats().bytes_in;
  rep.stream_bytes_forwarded = sink.forwarded();
  rep.return_path_bytes = return_path_bytes;
  d.table = table;
  if (shared) add_shared(rep, *shared);
  d.stream = std::string(sink.kept());
  return d;
}

}  // namespace bnf::qemu
