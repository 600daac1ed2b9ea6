#include "digest/live_digest_table.hpp"

#include <sys/mman.h>

#include <algorithm>

#include "common/prefault.hpp"

namespace bnf {

LiveDigestTable::LiveDigestTable(const PageDigester& h, std::span<const std::byte> ram, StartWriteTracker start_tracker,
                                 LiveDigestOptions opt)
    : h_(h), ram_(ram), start_tracker_(std::move(start_tracker)), opt_(opt), table_(ram.size() / kPageSize) {
  if (start_tracker_) {
    n_.not_tracked_because = "the first pass left no idle CPU to hash ahead";
    thread_ = std::thread([this] { run(); });
  } else {
    n_.not_tracked_because = "off";
  }
}

LiveDigestTable::~LiveDigestTable() { stop(); }

void LiveDigestTable::run() {
  IdleCores idle;
  const uint64_t total = pages();
  bool started = false;
  for (uint64_t p = 0; p < total;) {
    if (!pause(opt_.when_idle ? std::chrono::milliseconds(100) : std::chrono::milliseconds(0))) return;
    if (opt_.when_idle && idle.sample() < 0.5) continue;
    if (!started) {
      started = true;
      Result<std::unique_ptr<WriteTracker>> t = start_tracker_();
      if (t.is_ok()) {
        tracker_ = std::move(*t);
        tracking_.store(true, std::memory_order_release);
      } else {
        n_.not_tracked_because = t.status().message();
      }
    }
    const uint64_t end = std::min(total, p + opt_.step_pages);
    step(p, end);
    p = end;
  }
}

// Faults the step in (one call, not page by page) and, with writes tracked, hashes it.
void LiveDigestTable::step(uint64_t from, uint64_t to) {
  auto* at = const_cast<std::byte*>(ram_.data() + from * kPageSize);
  if (::madvise(at, (to - from) * kPageSize, MADV_POPULATE_READ) == 0) n_.faulted_in += to - from;
  if (!tracking()) return;
  for (uint64_t p = from; p < to; ++p) table_[p] = h_.page(ram_.data() + p * kPageSize, kPageSize);
  reached_ = to;
  n_.hashed_ahead = to;
}

bool LiveDigestTable::pause(std::chrono::milliseconds d) {
  std::unique_lock lk(mu_);
  if (d.count() > 0) wake_.wait_for(lk, d, [this] { return stop_; });
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

DigestTable LiveDigestTable::finish(unsigned threads) {
  stop();
  PageBitmap todo(pages());
  todo.set_all();
  if (tracking() && reached_ > 0) {
    Result<PageBitmap> changed = tracker_->changed_since_start();
    if (changed.is_ok()) {
      todo = std::move(*changed);
      todo.set_range(reached_, pages() - reached_);
      n_.tracked = true;
    } else {
      n_.not_tracked_because = "the write tracker failed at the stop: " + changed.status().message();
    }
  }
  n_.hashed_at_stop = table_.rehash(h_, ram_, todo, threads);
  return std::move(table_);
}

}  // namespace bnf
