#include "digest/live_digest_table.hpp"

#include <sys/mman.h>

#include <algorithm>

#include "common/prefault.hpp"

namespace bnf {

LiveDigestTable::LiveDigestTable(const PageDigester& h, std::span<const std::byte> ram,
                                 std::unique_ptr<WriteTracker> tracker, LiveDigestOptions opt)
    : h_(h), ram_(ram), tracker_(std::move(tracker)), opt_(opt), table_(ram.size() / kPageSize) {
  if (tracker_) thread_ = std::thread([this] { run(); });
}

LiveDigestTable::~LiveDigestTable() { stop(); }

void LiveDigestTable::run() {
  IdleCores idle;
  const uint64_t total = pages();
  for (uint64_t p = 0; p < total;) {
    if (!pause(opt_.when_idle ? std::chrono::milliseconds(100) : std::chrono::milliseconds(0))) return;
    if (opt_.when_idle && idle.sample() < 0.5) continue;
    const uint64_t end = std::min(total, p + opt_.step_pages);
    auto* at = const_cast<std::byte*>(ram_.data() + p * kPageSize);
    (void)::madvise(at, (end - p) * kPageSize, MADV_POPULATE_READ);  // faults in one call, not page by page
    for (; p < end; ++p) table_[p] = h_.page(ram_.data() + p * kPageSize, kPageSize);
    reached_ = p;
    n_.hashed_ahead = p;
  }
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

DigestTable LiveDigestTable::finish(unsigned threads) {
  stop();
  PageBitmap todo(pages());
  todo.set_all();
  if (tracker_ && reached_ > 0) {
    Result<PageBitmap> changed = tracker_->changed_since_start();
    if (changed.is_ok()) {
      todo = std::move(*changed);
      todo.set_range(reached_, pages() - reached_);
    } else {
      n_.tracker_error = changed.status().message();
    }
  }
  n_.hashed_at_stop = table_.rehash(h_, ram_, todo, threads);
  return std::move(table_);
}

}  // namespace bnf
