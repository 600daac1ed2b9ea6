#include "digest/live_digest_table.hpp"

#include <sys/mman.h>

#include <algorithm>

#include "common/prefault.hpp"
#include "digest/hole_digests.hpp"

namespace bnf {

LiveDigestTable::LiveDigestTable(const PageDigester& h, std::span<const std::byte> ram,
                                 std::unique_ptr<WriteTracker> tracker, std::string why_not, LiveDigestOptions opt)
    : h_(h), ram_(ram), tracker_(std::move(tracker)), opt_(opt), table_(ram.size() / kPageSize) {
  if (!tracker_) n_.not_tracked_because = std::move(why_not);
  if (pages() > 0) thread_ = std::thread([this] { run(); });
}

LiveDigestTable::~LiveDigestTable() { stop(); }

void LiveDigestTable::run() {
  using Clock = std::chrono::steady_clock;
  constexpr auto kGauge = std::chrono::milliseconds(100);
  // Hashing for `busy` after each gauge takes busy_core_share of a core.
  const double share = tracking() ? std::clamp(opt_.busy_core_share, 0.0, 0.9) : 0.0;
  const auto busy = std::chrono::duration_cast<Clock::duration>(kGauge * (share / (1 - share)));
  IdleCores idle;
  const uint64_t total = pages();
  for (uint64_t p = 0; p < total;) {
    if (!pause(opt_.when_idle ? kGauge : std::chrono::milliseconds(0))) return;
    if (!opt_.when_idle || idle.sample() >= 0.5)
      p = step(p, std::min(total, p + opt_.step_pages), Clock::time_point::max());
    else if (share > 0)
      p = step(p, total, Clock::now() + busy);
  }
}

// Faults the step in and, with writes tracked, hashes it, 4 MiB at a time:
// the stop waits for the piece in hand (a whole 64 MiB step took tens of ms).
uint64_t LiveDigestTable::step(uint64_t from, uint64_t to, std::chrono::steady_clock::time_point until) {
  constexpr uint64_t kPiece = 1024;
  uint64_t p = from;
  while (p < to && !stop_.load(std::memory_order_relaxed) && std::chrono::steady_clock::now() < until) {
    const uint64_t end = std::min(to, p + kPiece);
    auto* at = const_cast<std::byte*>(ram_.data() + p * kPageSize);
    if (::madvise(at, (end - p) * kPageSize, MADV_POPULATE_READ) == 0) n_.faulted_in += end - p;
    if (tracking()) {
      for (uint64_t q = p; q < end; ++q) table_[q] = h_.page(ram_.data() + q * kPageSize, kPageSize);
      reached_ = end;
      n_.hashed_ahead = end;
    }
    p = end;
  }
  return p;
}

bool LiveDigestTable::pause(std::chrono::milliseconds d) {
  std::unique_lock lk(mu_);
  if (d.count() > 0) wake_.wait_for(lk, d, [this] { return stop_.load(); });
  return !stop_;
}

void LiveDigestTable::stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<uint64_t> LiveDigestTable::pages_written() {
  if (!tracking()) return Status(Errc::invalid_argument, "writes are not tracked");
  BNF_ASSIGN_OR_RETURN(PageBitmap changed, tracker_->changed_since_start());
  return changed.count();
}

std::optional<PageBitmap> LiveDigestTable::written_at_stop() {
  if (!tracking()) return std::nullopt;
  Result<PageBitmap> changed = tracker_->changed_since_start();
  if (!changed.is_ok()) {
    n_.not_tracked_because = "the write tracker failed at the stop: " + changed.status().message();
    return std::nullopt;
  }
  n_.tracked = true;
  return std::move(*changed);
}

void LiveDigestTable::settle_holes(PageBitmap& todo, PageBitmap& final_pages) {
  const PageBitmap holes = digest_holes(table_, h_, opt_.ram_file, todo);
  n_.holes = holes.count();
  (void)final_pages.unite(holes);  // same size
}

PageBitmap LiveDigestTable::hash_at_stop(unsigned threads, uint64_t read_before) {
  stop();
  PageBitmap now(pages());
  PageBitmap final_pages(pages());
  if (std::optional<PageBitmap> written = written_at_stop()) {
    // Hashed ahead and not written since: final. Read by QEMU before the
    // tracker started and not hashed ahead: hashed now too.
    const uint64_t reached = reached_;
    read_before = std::min(pages(), read_before);
    now = std::move(*written);
    if (read_before > reached) now.set_range(reached, read_before - reached);
    final_pages = now;
    final_pages.set_range(0, reached);
  } else {
    now.set_all();
    final_pages.set_all();
  }
  settle_holes(now, final_pages);
  n_.hashed_at_stop = table_.rehash(h_, ram_, now, threads);
  final_ = final_pages;
  return final_pages;
}

PageBitmap LiveDigestTable::finish_written(unsigned threads) {
  return hash_at_stop(threads, opt_.read_before_tracking);
}

DigestTable LiveDigestTable::finish(unsigned threads) {
  if (!final_) (void)hash_at_stop(threads, pages());  // all not hashed ahead, now
  PageBitmap rest(pages());
  rest.set_all();
  (void)rest.subtract(*final_);  // same size
  const auto t = std::chrono::steady_clock::now();
  n_.hashed_after = table_.rehash(h_, ram_, rest, threads);
  n_.hashed_after_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  return std::move(table_);
}

}  // namespace bnf
