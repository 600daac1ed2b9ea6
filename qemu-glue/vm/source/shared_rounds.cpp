#include "vm/source/shared_rounds.hpp"

#include <cstring>
#include <thread>
#include <utility>

#include "common/elapsed.hpp"
#include "common/page.hpp"
#include "digest/hole_digests.hpp"
#include "protocol/control.hpp"
#include "protocol/frame.hpp"
#include "push/sharding.hpp"

namespace bnf::qemu {

namespace {
using Clock = std::chrono::steady_clock;
constexpr unsigned kDigestThreads = 2;
constexpr uint64_t kFramePages = 256;  // 1 MiB of payload per PAGES frame
constexpr auto kHotWindow = std::chrono::milliseconds(20);

// Appends page `p` to `runs`, extending the last run where it is next and in
// the same shard chunk (a run never crosses one: sharding.hpp).
void append(std::vector<PageRun>& runs, uint64_t p) {
  if (!runs.empty() && runs.back().first + runs.back().count == p && p % kShardPages != 0)
    ++runs.back().count;
  else
    runs.push_back({p, 1});
}
}  // namespace

SharedRounds::SharedRounds(transport::Connection& c, std::span<const std::byte> ram, int ram_fd, WriteTracker& tracker,
                           const PageDigester& h, std::optional<DigestTable> base, Round0Source from,
                           RoundBudget budget)
    : c_(c),
      ram_(ram),
      ram_fd_(ram_fd),
      pages_(ram.size() / kPageSize),
      tracker_(tracker),
      h_(h),
      incremental_(base.has_value()),
      from_(std::move(from)),
      filter_(h, std::move(base), pages_),
      planner_(budget),
      pending_(pages_),
      touched_(pages_) {
  staging_.reserve(kFramePages * kPageSize);
}

Result<PageBitmap> SharedRounds::take() {
  const auto t = Clock::now();
  Result<PageBitmap> written = tracker_.take_changed();
  n_.tracker_s += since(t);
  return written;
}

// A full trip: every page that is not a hole (the new image is zeros).
// Incremental: the pages written since arrival, or those whose digest differs
// from the base's, found by a scan of the RAM (holes count as zero pages,
// unread).
Result<PageBitmap> SharedRounds::round0_pages() {
  const auto t = Clock::now();
  if (incremental_ && from_.changed) {
    // What the guest writes within this window of the take is hot: precopy()
    // leaves it to the rounds rather than send it now and again later.
    std::this_thread::sleep_until(from_.taken_at + kHotWindow);
    PageBitmap written = std::move(*from_.changed);
    from_.changed.reset();
    n_.scan_s = since(t);
    return written;
  }
  PageBitmap to_read(pages_);
  to_read.set_all();
  DigestTable now(pages_);
  PageBitmap holes = digest_holes(now, h_, ram_fd_, to_read);
  if (!incremental_) {
    n_.scan_s = since(t);
    return to_read;
  }
  BNF_ASSIGN_OR_RETURN(PageBitmap differ, scan_changed(now, to_read));
  n_.scan_s = since(t);
  return differ;
}

Result<PageBitmap> SharedRounds::scan_changed(DigestTable& now, const PageBitmap& to_read) {
  now.rehash(h_, ram_, to_read, kDigestThreads);
  PageBitmap differ(pages_);
  const DigestTable& dest = filter_.receiver();
  for (uint64_t p = 0; p < pages_; ++p)
    if (!(now[p] == dest[p])) differ.set(p);
  return differ;
}

Status SharedRounds::precopy(const Tick& tick) {
  const auto t0 = Clock::now();
  BNF_ASSIGN_OR_RETURN(PageBitmap first, round0_pages());
  if (incremental_) {
    // Written during the scan or the window: likely written again, so left to the rounds.
    BNF_ASSIGN_OR_RETURN(pending_, take());
    BNF_TRY(first.subtract(pending_));
  }
  BNF_ASSIGN_OR_RETURN(uint64_t bytes, send_pages(first));
  n_.round0_pages = n_.pages_sent + n_.pages_zero;
  if (!incremental_) {
    BNF_ASSIGN_OR_RETURN(pending_, take());
  }
  n_.round0_s = since(t0);
  RoundVerdict v = planner_.after_round(bytes, n_.round0_s, pending_.count());
  while (v == RoundVerdict::again) {
    const auto t = Clock::now();
    BNF_ASSIGN_OR_RETURN(PageBitmap written, take());
    PageBitmap quiet = pending_;
    BNF_TRY(quiet.subtract(written));
    BNF_ASSIGN_OR_RETURN(bytes, send_pages(quiet));
    pending_ = std::move(written);
    ++n_.rounds;
    v = planner_.after_round(bytes, since(t), pending_.count());
    if (tick) tick(n_);
  }
  n_.stopped_by = RoundPlanner::name(v);
  n_.held_back = pending_.count();
  n_.precopy_s = since(t0);
  return Status::ok();
}

Status SharedRounds::final_round() {
  const auto t = Clock::now();
  const uint64_t before = n_.pages_sent + n_.pages_zero;
  BNF_ASSIGN_OR_RETURN(PageBitmap last, take());
  BNF_TRY(last.unite(pending_));
  BNF_TRY(send_pages(last).status());
  n_.final_pages = n_.pages_sent + n_.pages_zero - before;
  ++n_.rounds;
  n_.final_s = since(t);
  return Status::ok();
}

Result<uint64_t> SharedRounds::send_pages(const PageBitmap& which) {
  uint64_t bytes = 0;
  Status st = Status::ok();
  which.for_each_run([&](PageRun r) {
    for (uint64_t p = r.first; p < r.first + r.count && st.is_ok(); ++p) {
      const size_t at = staging_.size();
      staging_.resize(at + kPageSize);
      std::memcpy(staging_.data() + at, ram_.data() + p * kPageSize, kPageSize);
      staged_.push_back(p);
      if (staged_.size() == kFramePages) st = send_staged(bytes);
    }
  });
  BNF_TRY(st);
  BNF_TRY(send_staged(bytes));
  BNF_TRY(send_zero_runs());
  BNF_TRY(c_.flush());
  return bytes;
}

// The staged copies the destination lacks go in one PAGES frame; the zero
// ones wait for a ZEROS frame.
Status SharedRounds::send_staged(uint64_t& bytes) {
  std::vector<PageRun> runs;
  std::vector<transport::ConstBuffer> payload;
  for (size_t i = 0; i < staged_.size(); ++i) {
    const std::byte* copy = staging_.data() + i * kPageSize;
    const uint64_t p = staged_[i];
    const Digest d = h_.page(copy, kPageSize);
    if (filter_.offer(p, d) == StreamFilter::Verdict::skip) continue;
    touched_.set(p);
    if (filter_.is_zero(d)) {
      append(zero_runs_, p);
      ++n_.pages_zero;
      continue;
    }
    append(runs, p);
    if (!payload.empty() && payload.back().data + payload.back().size == copy)
      payload.back().size += kPageSize;
    else
      payload.push_back({copy, kPageSize});
    ++n_.pages_sent;
  }
  // Not in a registered region: the transport copies the payload at post.
  if (!runs.empty()) BNF_TRY(proto::post_run_frame(c_, proto::FrameType::pages, runs, payload));
  bytes += pages_in(runs) * kPageSize;
  staging_.clear();
  staged_.clear();
  return Status::ok();
}

Status SharedRounds::send_zero_runs() {
  for (size_t i = 0; i < zero_runs_.size(); i += proto::kMaxRunsPerFrame) {
    const size_t n = std::min<size_t>(proto::kMaxRunsPerFrame, zero_runs_.size() - i);
    BNF_TRY(proto::post_run_frame(c_, proto::FrameType::zeros, std::span(zero_runs_).subspan(i, n), {}));
  }
  zero_runs_.clear();
  return Status::ok();
}

nlohmann::json SharedRounds::report() const {
  nlohmann::json j = {{"tracker", from_.tracker},
                      {"rounds", n_.rounds},
                      {"stopped_by", n_.stopped_by},
                      {"round0_pages", n_.round0_pages},
                      {"held_back", n_.held_back},
                      {"final_pages", n_.final_pages},
                      {"link_rate_mib_s", planner_.link_rate() / (1 << 20)},
                      {"write_rate_pages_s", planner_.write_rate_pages()},
                      {"dirtied_faster_than_link", planner_.dirtied_faster_than_link()},
                      {"scan_s", n_.scan_s},
                      {"round0_s", n_.round0_s},
                      {"precopy_s", n_.precopy_s},
                      {"final_round_s", n_.final_s},
                      {"tracker_s", n_.tracker_s}};
  if (!from_.tracker_lost.empty()) j["tracker_lost"] = from_.tracker_lost;
  return j;
}

}  // namespace bnf::qemu
