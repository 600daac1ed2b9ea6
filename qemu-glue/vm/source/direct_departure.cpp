#include "vm/source/direct_departure.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <optional>
#include <thread>

#include "common/cpu_wait.hpp"
#include "common/elapsed.hpp"
#include "common/files.hpp"
#include "common/page.hpp"
#include "common/prefault.hpp"
#include "protocol/control.hpp"
#include "protocol/peer_auth.hpp"
#include "transport/plain/plain_connection.hpp"
#include "transport/tcp/socket_util.hpp"
#include "vm/destination/direct_arrival.hpp"
#include "vm/trip/migration_report.hpp"
#include "vm/trip/peer_reason.hpp"

namespace bnf::qemu {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kFramePages = 64;

constexpr int kPollMs = 20;
// The stopped VM's re-hash, per GiB, on two threads beside QEMU's final pass,
// with the mapping kept warm.
constexpr double kRehashMsPerGiB = 120;
// The share of one core the check's table is hashed ahead with while the
// machine is busy (LiveDigestOptions::busy_core_share): a CPU-bound pass
// leaves no idle time, and without it the whole RAM is re-hashed in the
// downtime; more than this slows the pass more than it saves.
constexpr double kBusyHashShare = 0.1;

// The operator's downtime limit goes on as QEMU's first pass ends: when what
// is left of the main block is about what QEMU sends while the stopped VM is
// re-hashed (the two overlap in the downtime, so that tail costs no time of
// its own). QEMU walks the biggest block first, so the small ones (ROMs, VGA
// memory: mostly zero pages) are what is left after it. Earlier, QEMU stops
// with up to a limit's worth of unsent pages; later, it first resends what the
// guest dirtied in a live second pass and the re-hash adds its own time. The
// tail is the re-hash's, whatever holds the pass back; with QEMU's writes
// tracked, what is left to hash at the stop is what the table made ahead has
// not reached (and the few pages written since).
//
// QEMU applies a new downtime limit only at its next bandwidth update, every
// 100 ms (BUFFER_DELAY in QEMU's migration.c): a limit set later than that
// (plus a poll) before the first pass ends comes after it, and QEMU resends
// what the guest dirtied in a live second pass. Where the guest wrote little
// since the trip began, that costs nothing and the tail stays small.
// How each constant was chosen: docs/stream-mode-design.md, "The direct
// departure's constants".
constexpr double kQemuLimitDelayMs = 100 + 2 * kPollMs;

double tail_ms(uint64_t bytes_to_rehash) {
  return kRehashMsPerGiB * static_cast<double>(bytes_to_rehash) / (1ULL << 30);
}

// Whether QEMU's pass is held back by the CPUs: its migration thread waited
// for one a tenth of the time or more since it started; a link-bound thread
// sleeps in its sends instead. Without thread names (a QEMU started by an
// older daemon), the machine had under half a core idle. Gauged at most every
// 200 ms (/proc/stat counts 10 ms ticks).
class CpuBoundGauge {
 public:
  explicit CpuBoundGauge(int qemu_pid) : pid_(qemu_pid) {}
  bool cpu_bound() {
    if (since(last_) < 0.2) return bound_;
    last_ = Clock::now();
    if (!thread_ && pid_ > 0) thread_ = CpuWait::of_thread(pid_, "live_migration");
    wait_ = thread_ ? thread_->share() : std::nullopt;
    bound_ = wait_ ? *wait_ >= 0.1 : idle_.sample() < 0.5;
    return bound_;
  }
  [[nodiscard]] std::optional<double> wait_share() const { return wait_; }

 private:
  int pid_;
  std::optional<CpuWait> thread_;
  IdleCores idle_;
  bool bound_ = false;  // until gauged: the smaller tail
  std::optional<double> wait_;
  Clock::time_point last_ = Clock::now();
};

// The pass's rate as QEMU last measured it (query-migrate's ram.mbps).
double bytes_per_ms(const json& ram) { return ram.value("mbps", 0.0) * 1e6 / 8 / 1000; }

bool first_pass_ending(const json& ram, uint64_t main_bytes, double tail_ms) {
  const double rate = bytes_per_ms(ram);
  const uint64_t total = ram.value("total", uint64_t{0});
  const uint64_t small_blocks = total - std::min(total, main_bytes);
  const uint64_t remaining = ram.value("remaining", uint64_t{0});
  const uint64_t main_left = remaining - std::min(remaining, small_blocks);
  return rate > 0 && static_cast<double>(main_left) < std::max<double>(2 * kPollMs, tail_ms) * rate;
}

// Whether a live second pass would resend enough to matter (what the guest
// wrote since the trip began, at the pass's rate, over two polls). Without a
// tracker, the tail stays the re-hash's (at 1 GiB and above it exceeds
// kQemuLimitDelayMs anyway).
bool guest_writes_much(LiveDigestTable& live, const json& ram) {
  if (!live.tracking()) return false;
  Result<uint64_t> written = live.pages_written();
  return !written.is_ok() || static_cast<double>(*written * kPageSize) > 2 * kPollMs * bytes_per_ms(ram);
}

// A tracked, link-bound trip knows how much the guest dirtied during the pass,
// so it can give QEMU a limit that stops it as the pass ends: QEMU stops once
// what it has left (unsent plus dirtied) fits in limit x its bandwidth,
// checked at every step, so with a limit of the dirtied pages' link time plus
// `tail` it stops with about `tail` unsent, not wherever its next 100 ms
// update falls after the operator's limit went on (up to 100 ms more to send
// in the downtime). Set kQemuLimitDelayMs early, so that an update applies it
// in time. Not where that limit would reach the operator's.
std::optional<int> stop_limit_ms(LiveDigestTable& live, const json& ram, double tail, int operator_limit_ms) {
  const double rate = bytes_per_ms(ram);
  if (!live.tracking() || rate <= 0) return std::nullopt;
  Result<uint64_t> written = live.pages_written();
  if (!written.is_ok()) return std::nullopt;
  const double limit = static_cast<double>(*written * kPageSize) / rate + tail;
  if (limit >= operator_limit_ms) return std::nullopt;
  return static_cast<int>(limit) + 1;
}

// Watches QEMU's migration until it stops the VM for its final pass: the
// operator's downtime limit from its second pass, progress reports, and a
// stream that stops moving (a cut link: QEMU itself would wait for minutes).
class StopWatcher {
 public:
  StopWatcher(QmpClient& qmp, const DirectDepartureSetup& s, LiveDigestTable& live, DirectDeparture& d)
      : qmp_(qmp), s_(s), live_(live), d_(d), gauge_(s.qemu_pid) {}

  Result<json> run() {
    while (true) {
      auto stop = qmp_.wait_event("STOP", std::chrono::milliseconds(kPollMs));
      if (stop.is_ok()) return *stop;
      if (stop.status().code() != Errc::cancelled) return stop.status();
      // Not a plain execute: QEMU answers only after its final pass if the VM
      // stops meanwhile, and the re-hash must start at the stop.
      BNF_ASSIGN_OR_RETURN(std::optional<json> polled, qmp_.execute_unless_event("query-migrate", nullptr, "STOP"));
      if (polled) BNF_TRY(on_poll(*polled));  // else stopped: the next wait_event takes it
    }
  }

 private:
  // One answer to query-migrate.
  Status on_poll(const json& m) {
    const std::string st = m.value("status", std::string());
    if (st == "failed" || st == "cancelled")  // its connection to the destination broke
      return Status(Errc::connection_lost,
                    fmt::format("QEMU's migration {}: {}", st, m.value("error-desc", std::string("no reason given"))));
    const json ram = m.value("ram", json::object());
    BNF_TRY(set_limits(ram));
    BNF_TRY(check_moving(ram.value("transferred", 0ULL)));
    report(ram);
    return Status::ok();
  }

  // Tracked, the downtime hashes only what the guest wrote (little, where a
  // stop limit applies); untracked, what hashing ahead did not reach.
  [[nodiscard]] double own_tail_ms() const {
    const uint64_t to_rehash = !s_.switchover_check ? s_.ram.size()
                               : live_.tracking() && !s_.check_all_before_resume
                                   ? 0
                                   : live_.pages_not_reached() * kPageSize;
    return tail_ms(to_rehash);
  }

  Status set_limits(const json& ram) {
    const bool cpu_bound = !limit_set_ && gauge_.cpu_bound();  // gauged only until the limit is on
    const double own_tail = own_tail_ms();
    if (!limit_set_ && !stop_limit_by_ && !cpu_bound &&
        first_pass_ending(ram, s_.ram.size(), std::max<double>(2 * kPollMs, own_tail) + kQemuLimitDelayMs))
      BNF_TRY(set_stop_limit(ram, std::max<double>(2 * kPollMs, own_tail)));
    if (!min_tail_ && !stop_limit_by_ && first_pass_ending(ram, s_.ram.size(), kQemuLimitDelayMs))
      min_tail_ = guest_writes_much(live_, ram) ? kQemuLimitDelayMs : 0;  // a stop limit needs no tail of its own
    const double tail = std::max(min_tail_.value_or(0), own_tail);
    // With a stop limit on, the operator's limit only if QEMU did not stop by
    // itself in time (the guest dirtied more than it had): the pass syncs its
    // dirty bitmap on its way to that stop, so its sync count says nothing.
    const bool operator_limit_due =
        stop_limit_by_ ? Clock::now() > *stop_limit_by_
                       : ram.value("dirty-sync-count", 0ULL) >= 2 || first_pass_ending(ram, s_.ram.size(), tail);
    if (limit_set_ || !operator_limit_due) return Status::ok();
    if (!stop_limit_by_) {
      d_.tail_ms = tail;
      d_.held_back_by = cpu_bound ? "cpu" : "link";
      d_.qemu_cpu_wait = gauge_.wait_share().value_or(-1);
    }
    BNF_TRY(qmp_.execute("migrate-set-parameters", {{"downtime-limit", s_.downtime_limit_ms}}).status());
    limit_set_ = true;
    return Status::ok();
  }

  // Near the first pass's end, with the link the bound: a limit that makes
  // QEMU stop as soon as what is left fits in `tail`.
  Status set_stop_limit(const json& ram, double tail) {
    std::optional<int> limit = stop_limit_ms(live_, ram, tail, s_.downtime_limit_ms);
    if (!limit) return Status::ok();
    BNF_TRY(qmp_.execute("migrate-set-parameters", {{"downtime-limit", *limit}}).status());
    stop_limit_by_ = Clock::now() + std::chrono::milliseconds(static_cast<int>(2 * (tail + kQemuLimitDelayMs)) + 100);
    d_.tail_ms = tail;
    d_.held_back_by = "link";
    d_.qemu_cpu_wait = gauge_.wait_share().value_or(-1);
    d_.stop_limit_ms = *limit;
    return Status::ok();
  }

  Status check_moving(uint64_t sent) {
    if (sent != last_sent_) {
      last_sent_ = sent;
      last_move_ = Clock::now();
      return Status::ok();
    }
    if (since(last_move_) * 1000 <= s_.peer_timeout_ms) return Status::ok();
    (void)qmp_.execute("migrate_cancel");
    return Status(Errc::unreachable,
                  fmt::format("the destination is unreachable: QEMU's stream to {} made no progress for {:.0f} s",
                              s_.destination, since(last_move_)));
  }

  void report(const json& ram) {
    if (!s_.progress || since(last_report_) < 0.5) return;
    last_report_ = Clock::now();
    const uint64_t total = ram.value("total", uint64_t{0}) / kPageSize;
    const uint64_t left = std::min<uint64_t>(total, ram.value("remaining", uint64_t{0}) / kPageSize);
    const uint64_t sent = ram.value("transferred", 0ULL);
    s_.progress(json{{"seconds", since(t0_)},
                     {"mode", "full"},
                     {"round", ram.value("dirty-sync-count", 0ULL)},
                     {"pages_total", total},
                     {"pages_seen", total - left},
                     {"pages_sent", ram.value("normal", 0ULL)},
                     {"pages_skipped", 0},
                     {"wire_bytes", sent},
                     {"stream_bytes", sent}});
  }

  QmpClient& qmp_;
  const DirectDepartureSetup& s_;
  LiveDigestTable& live_;
  DirectDeparture& d_;
  CpuBoundGauge gauge_;
  const Clock::time_point t0_ = Clock::now();
  Clock::time_point last_move_ = Clock::now();
  Clock::time_point last_report_ = Clock::now() - std::chrono::seconds(1);
  uint64_t last_sent_ = UINT64_MAX;
  bool limit_set_ = false;
  std::optional<double> min_tail_;                  // decided once, near the first pass's end (kQemuLimitDelayMs)
  std::optional<Clock::time_point> stop_limit_by_;  // a stop limit is on: QEMU should have stopped by then
};

Result<json> await_stop(QmpClient& qmp, const DirectDepartureSetup& s, LiveDigestTable& live, DirectDeparture& d) {
  return StopWatcher(qmp, s, live, d).run();
}

// Sends the pages of `chunks` whose digests differ from the destination's
// (`theirs`, the chunks' pages in order) where ours are final: consecutive
// ones in one frame.
Result<uint64_t> send_differing(transport::Connection& c, const DigestTable& table, const PageBitmap* final_pages,
                                std::span<const std::byte> ram, const std::vector<uint64_t>& chunks,
                                const std::vector<Digest>& theirs) {
  uint64_t sent = 0;
  size_t k = 0;
  for (uint64_t chunk : chunks) {
    const uint64_t first = chunk * kSettleChunkPages;
    const uint64_t end = std::min(table.size(), first + kSettleChunkPages);
    auto differs = [&](uint64_t p) {
      return (final_pages == nullptr || final_pages->test(p)) && !(table[p] == theirs[k + p - first]);
    };
    for (uint64_t p = first; p < end;) {
      if (!differs(p)) {
        ++p;
        continue;
      }
      uint64_t q = p + 1;
      while (q < end && q - p < kFramePages && differs(q)) ++q;
      const PageRun run{p, q - p};
      const transport::ConstBuffer bytes{ram.data() + p * kPageSize, run.count * kPageSize};
      BNF_TRY(proto::post_run_frame(c, proto::FrameType::pages, std::span(&run, 1), std::span(&bytes, 1)));
      sent += run.count;
      p = q;
    }
    k += end - first;
  }
  return sent;
}

// Whether the settle compares a chunk by its digest (all its pages' digests
// are final), page by page (some are), or not at all.
enum class ChunkCompare { by_digest, by_page, no };

ChunkCompare chunk_compare(const PageBitmap* final_pages, uint64_t first, uint64_t end) {
  if (final_pages == nullptr) return ChunkCompare::by_digest;
  if (final_pages->find_next_set(first) >= end) return ChunkCompare::no;
  return final_pages->find_next_clear(first) >= end ? ChunkCompare::by_digest : ChunkCompare::by_page;
}

// The stream the destination QEMU got (STREAM frames), then VM_DONE.
Status collect_done(transport::Connection& c, DirectDeparture& d) {
  std::vector<std::byte> buf;
  while (true) {
    BNF_ASSIGN_OR_RETURN(proto::Frame f, proto::recv_frame(c));
    if (f.header.type == proto::FrameType::stream) {
      BNF_TRY(proto::recv_payload(c, f, proto::kMaxStreamPayload, buf));
      d.stream_kept.append(reinterpret_cast<const char*>(buf.data()), buf.size());
      continue;
    }
    if (f.header.type != proto::FrameType::vm_done)
      return {Errc::protocol, std::string("unexpected ") + proto::type_name(f.header.type) + " after VM_END"};
    BNF_ASSIGN_OR_RETURN(d.done, proto::parse_json_meta(f));
    return Status::ok();
  }
}

// QEMU's own end of the trip (it completes once the destination QEMU's return
// path said it loaded everything); its figures go into the report.
json await_completed(QmpClient& qmp) {
  json last = json::object();
  for (int i = 0; i < 100; ++i) {
    auto m = qmp.execute("query-migrate");
    if (!m.is_ok()) break;
    last = *m;
    if (last.value("status", std::string()) != "active" && last.value("status", std::string()) != "device") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return last;
}

constexpr const char* kStreamFdName = "bnf-stream";

}  // namespace

Result<std::unique_ptr<StreamTunnel>> open_direct_stream(const Endpoint& to, const std::string& token,
                                                         const proto::AuthenticatedTransport& t,
                                                         unsigned peer_timeout_ms) {
  constexpr int kConnectTimeoutMs = 10000;
  BNF_ASSIGN_OR_RETURN(UniqueFd s,
                       transport::tcp_connect({"tcp", to.host, to.port}, kConnectTimeoutMs, peer_timeout_ms));
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<transport::Connection> c,
                       proto::secure_to_peer(std::make_unique<transport::PlainConnection>(std::move(s)), t.key(),
                                             to.to_string(), t.protection()));
  BNF_TRY(proto::send_control(*c, proto::FrameType::vm_stream, {{"token", token}})
              .context("open QEMU's stream to " + to.to_string()));
  return StreamTunnel::start(std::move(c));
}

Status start_direct_migration(QmpClient& qmp, UniqueFd stream) {
  BNF_TRY(qmp.execute_with_fd("getfd", {{"fdname", kStreamFdName}}, stream.get()).status());
  stream.reset();
  return qmp.execute("migrate", {{"uri", std::string("fd:") + kStreamFdName}}).status();
}

Status await_pass_started(QmpClient& qmp, std::chrono::milliseconds limit) {
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    BNF_ASSIGN_OR_RETURN(json m, qmp.execute("query-migrate"));
    if (m.value("status", std::string()) != "setup") return Status::ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return Status::ok();
}

// VM_EXPECT names the stopped VM's root, if all of its table is final; a
// destination holding it says so in VM_LANDED (`same`), and that is all.
// Otherwise VM_LANDED says what the destination holds, by chunks; for the chunks where
// the stopped VM differs (QEMU 7.2 under TCG loses writes made just before the
// stop), and those where only some of our digests are final, VM_CHUNKS
// fetches the page digests, and the pages that differ go again; then VM_END
// with the root of the stopped VM's table, or none if it is not all final.
Result<uint64_t> settle_with_destination(transport::Connection& c, const PageDigester& h, const DigestTable& table,
                                         const PageBitmap* final_pages, std::span<const std::byte> ram) {
  const bool whole = final_pages == nullptr || final_pages->count() == table.size();
  const std::string root = whole ? digest_hex(table.root(h)) : "";
  BNF_TRY(proto::send_control(c, proto::FrameType::vm_expect, {{"root", root}}));
  BNF_ASSIGN_OR_RETURN(proto::Frame f, proto::expect_frame(c, proto::FrameType::vm_landed));
  BNF_ASSIGN_OR_RETURN(json j, proto::parse_json_meta(f));
  BNF_ASSIGN_OR_RETURN(uint64_t chunk_pages, proto::field<uint64_t>(j, "chunk_pages"));
  if (proto::field_or(j, "same", false)) {  // its root is ours: nothing to compare
    if (!whole || f.header.payload_len != 0)
      return Status(Errc::protocol, "bad frame: VM_LANDED says the image is the stopped VM's before it was named");
    return 0;
  }
  const std::vector<Digest> mine = table.chunk_digests(h, kSettleChunkPages);
  if (chunk_pages != kSettleChunkPages || f.header.payload_len != mine.size() * sizeof(Digest))
    return Status(Errc::protocol, "bad frame: VM_LANDED does not describe this VM's memory in chunks");
  std::vector<Digest> theirs(mine.size());
  BNF_TRY(proto::recv_checked_payload(c, std::as_writable_bytes(std::span(theirs)), f.header.payload_crc));
  std::vector<uint64_t> chunks;
  uint64_t pages_in_chunks = 0;
  for (uint64_t i = 0; i < mine.size(); ++i) {
    const uint64_t first = i * kSettleChunkPages;
    const uint64_t end = std::min(table.size(), first + kSettleChunkPages);
    const ChunkCompare how = chunk_compare(final_pages, first, end);
    if (how == ChunkCompare::by_page || (how == ChunkCompare::by_digest && !(mine[i] == theirs[i]))) {
      chunks.push_back(i);
      pages_in_chunks += end - first;
    }
  }
  uint64_t sent = 0;
  if (!chunks.empty()) {
    BNF_TRY(proto::send_control(c, proto::FrameType::vm_chunks, {{"chunks", chunks}}));
    BNF_ASSIGN_OR_RETURN(proto::Frame a, proto::expect_frame(c, proto::FrameType::vm_chunks));
    if (a.header.payload_len != pages_in_chunks * sizeof(Digest))
      return Status(Errc::protocol, "bad frame: VM_CHUNKS answer does not match the chunks asked for");
    std::vector<Digest> pages(pages_in_chunks);
    BNF_TRY(proto::recv_checked_payload(c, std::as_writable_bytes(std::span(pages)), a.header.payload_crc));
    BNF_ASSIGN_OR_RETURN(sent, send_differing(c, table, final_pages, ram, chunks, pages));
  }
  BNF_TRY(proto::send_control(c, proto::FrameType::vm_end, {{"root", root}}));
  return sent;
}

DepartureTableRest::DepartureTableRest(std::shared_ptr<const void> ram_owner, std::unique_ptr<LiveDigestTable> live,
                                       unsigned threads)
    : ram_owner_(std::move(ram_owner)),
      live_(std::move(live)),
      done_(std::async(std::launch::async, [t = live_.get(), threads] { return t->finish(threads); })) {}

Result<DirectDeparture> depart_direct(QmpClient& qmp, transport::Connection& c, const PageDigester& h,
                                      DirectDepartureSetup s) {
  DirectDeparture d;
  // Where the first pass leaves CPU idle (a slow link), the check's table is
  // hashed ahead if QEMU's writes are tracked (and with a tenth of a core
  // where it does not), or else the re-hash's page faults are taken now, not
  // in the downtime (~35 ms per GiB here).
  auto live = std::make_unique<LiveDigestTable>(h, s.switchover_check ? s.ram : std::span<const std::byte>(),
                                                std::move(s.tracker), s.no_tracker,
                                                LiveDigestOptions{.when_idle = true,
                                                                  .busy_core_share = kBusyHashShare,
                                                                  .read_before_tracking = s.read_before_tracking,
                                                                  .ram_file = s.ram_file});
  auto stop = await_stop(qmp, s, *live, d);
  if (!stop.is_ok())
    return peer_reason(c, stop.status(), true);  // QEMU's failure: the destination's reason if it gave one
  d.stop_event = std::move(*stop);
  d.stop_seen_s = QmpClient::wall_now() - QmpClient::event_time(d.stop_event);
  if (s.switchover_check) {  // the VM is stopped: its memory at switchover
    const auto t = Clock::now();
    PageBitmap final_pages(s.ram.size() / kPageSize);
    if (s.check_all_before_resume) {  // all of it in the downtime
      d.table = live->finish(2);
      final_pages.set_all();
    } else {
      final_pages = live->finish_written(2);
    }
    d.rehash_s = since(t);
    const auto t_settle = Clock::now();
    BNF_ASSIGN_OR_RETURN(
        d.pages_resent,
        settle_with_destination(c, h, s.check_all_before_resume ? d.table : live->table(), &final_pages, s.ram));
    d.settle_s = since(t_settle);
    d.rehash_counts = live->counts();
    // What the downtime did not compare (pages never written and not hashed
    // ahead: their bytes are the ones QEMU sent) is hashed while the VM
    // resumes there; the caller compares the roots (VM_DONE's) after it.
    if (final_pages.count() < final_pages.size())
      d.rest = std::make_shared<DepartureTableRest>(s.ram_owner, std::move(live), 2);
  } else {  // the destination keeps what landed; our table is made once the VM runs there
    BNF_TRY(proto::send_control(c, proto::FrameType::vm_expect, {{"root", ""}}));
    BNF_ASSIGN_OR_RETURN(proto::Frame landed, proto::expect_frame(c, proto::FrameType::vm_landed));
    std::vector<std::byte> unused;
    BNF_TRY(proto::recv_payload(
        c, landed, s.ram.size() / kPageSize / kSettleChunkPages * sizeof(Digest) + sizeof(Digest), unused));
    BNF_TRY(proto::send_control(c, proto::FrameType::vm_end, {{"root", ""}}));
  }
  BNF_TRY(collect_done(c, d));
  d.qemu_stats = await_completed(qmp);
  if (d.rest) return d;
  if (s.switchover_check) {  // the destination checked our whole table before it resumed
    // d.rest took `live` only on the path that returned above.
    if (!s.check_all_before_resume) d.table = live->finish(2);  // NOLINT(bugprone-use-after-move)
    if (proto::field_or<std::string>(d.done, "root", "") != digest_hex(d.table.root(h)))
      return Status(Errc::corrupt, "destination landed a different image (digest roots differ)");
  } else {
    const auto t = Clock::now();
    d.table = DigestTable::compute(h, s.ram, kPageSize, 2);
    d.rehash_s = since(t);
    d.unchecked_differs = proto::field_or<std::string>(d.done, "root", "") != digest_hex(d.table.root(h));
    d.rehash_counts = live->counts();  // with the check on, taken after the settle
  }
  return d;
}

}  // namespace bnf::qemu
