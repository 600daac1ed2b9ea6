#include "vm/source/departure_pages.hpp"

#include <chrono>
#include <cstring>

#include "common/page.hpp"
#include "digest/hole_digests.hpp"
#include "protocol/control.hpp"
#include "push/sharding.hpp"
#include "vm/trip/main_block.hpp"

namespace bnf::qemu {

namespace {

// Every this many page records the filter ticks: progress, and held pages
// that cooled down go out.
constexpr uint64_t kRecordsPerTick = 4096;

// Adds the time from construction to destruction to a counter.
class Stopwatch {
 public:
  explicit Stopwatch(double& total) : total_(total), t0_(std::chrono::steady_clock::now()) {}
  ~Stopwatch() { total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }
  Stopwatch(const Stopwatch&) = delete;
  Stopwatch& operator=(const Stopwatch&) = delete;

 private:
  double& total_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

DeparturePages::DeparturePages(transport::Connection& c, const PageDigester& h, std::optional<DigestTable> base,
                               uint64_t pages, DeparturePagesOptions opt)
    : c_(c), h_(h), filter_(h, std::move(base), pages), opt_(std::move(opt)), seen_(pages) {}

Status DeparturePages::on_blocks(const std::vector<RamBlockInfo>& blocks) {
  return check_main_block(blocks, filter_.pages() * kPageSize);
}

Result<bool> DeparturePages::on_page(const std::string& block, uint64_t offset, const std::byte* data) {
  if (block != kMainBlock) return true;
  Digest d;
  {
    Stopwatch sw(n_.digest_s);
    d = h_.page(data, kPageSize);
  }
  BNF_TRY(update(offset / kPageSize, d, data));
  return false;
}

Result<bool> DeparturePages::on_zero(const std::string& block, uint64_t offset) {
  if (block != kMainBlock) return true;
  BNF_TRY(update(offset / kPageSize, h_.zero_digest(), nullptr));
  return false;
}

DeparturePages::~DeparturePages() {
  if (rehash_thread_.joinable()) rehash_thread_.join();
}

Status DeparturePages::on_final_ram_section() {
  if (!final_section_at_) final_section_at_ = std::chrono::steady_clock::now();
  if (opt_.switchover_check.empty() || rehash_thread_.joinable()) return Status::ok();
  if (opt_.switchover_check.size() != filter_.pages() * kPageSize)
    return {Errc::mismatch, "switchover check: the RAM file's size is not the main block's"};
  // On a thread of its own, while the final section's pages are handled here.
  rehash_thread_ = std::thread([this] { rehash_at_stop(); });
  return Status::ok();
}

// The pages that may differ from the version QEMU sent, hashed again.
void DeparturePages::rehash_at_stop() {
  rehashed_ = PageBitmap(filter_.pages());
  rehashed_.set_all();
  if (opt_.write_tracker) {
    Result<PageBitmap> changed = opt_.write_tracker->changed_since_start();
    PageBitmap unseen(filter_.pages());
    unseen.set_all();
    if (changed.is_ok() && unseen.subtract(seen_).is_ok() && changed->unite(unseen).is_ok())
      rehashed_ = std::move(*changed);
    else if (!changed.is_ok())
      tracker_error_ = changed.status().message();
  }
  rehash_ = DigestTable(filter_.pages());
  PageBitmap read = rehashed_;
  (void)digest_holes(*rehash_, h_, opt_.ram_file, read);
  rehashed_count_ = rehash_->rehash(h_, opt_.switchover_check, read, 2);
}

Status DeparturePages::before_device_state() {
  BNF_TRY(send_all(prev_pass_));
  BNF_TRY(send_all(cooling_));
  BNF_TRY(send_all(this_pass_));
  BNF_TRY(fix_up_from_rehash());
  BNF_TRY(flush_batch());
  if (final_section_at_)
    n_.final_section_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - *final_section_at_).count();
  return Status::ok();
}

// Every page whose bytes at the stop differ from what the destination will hold.
Status DeparturePages::fix_up_from_rehash() {
  if (!rehash_thread_.joinable()) return Status::ok();
  {
    Stopwatch sw(n_.rehash_wait_s);
    rehash_thread_.join();
  }
  n_.hashed_at_stop = rehashed_count_;
  n_.tracker_error = tracker_error_;
  for (uint64_t p = rehashed_.find_next_set(0); p != PageBitmap::npos; p = rehashed_.find_next_set(p + 1)) {
    if (filter_.offer(p, (*rehash_)[p]) == StreamFilter::Verdict::skip) continue;
    ++n_.fixed_at_switchover;
    const bool zero = filter_.is_zero((*rehash_)[p]);
    BNF_TRY(send(p, zero ? nullptr : opt_.switchover_check.data() + p * kPageSize));
  }
  return Status::ok();
}

bool DeparturePages::may_hold() const { return opt_.incremental && held_bytes_ + kPageSize <= opt_.hold_budget_bytes; }

Status DeparturePages::update(uint64_t p, const Digest& d, const std::byte* data) {
  if (p >= filter_.pages()) return {Errc::protocol, "page offset past the main RAM block"};
  if (++records_ % kRecordsPerTick == 0) {
    if (tick_) tick_(n_);
    BNF_TRY(send_cooled());
  }
  BNF_TRY(scan_reached(p));
  seen_.set(p);
  const bool is_zero = filter_.is_zero(d);
  if (is_zero) ++n_.zero;
  // Rewritten again: still hot.
  if (auto prev = prev_pass_.find(p); prev != prev_pass_.end()) this_pass_.insert(prev_pass_.extract(prev));
  if (auto cool = cooling_.find(p); cool != cooling_.end()) this_pass_.insert(cooling_.extract(cool));
  auto cur = this_pass_.find(p);
  if (cur != this_pass_.end()) cur->second.seen = opt_.clock();
  if (filter_.offer(p, d) == StreamFilter::Verdict::skip) {
    if (!is_zero) ++n_.skipped;
    return Status::ok();
  }
  auto copy = [&] { return is_zero ? std::vector<std::byte>() : std::vector<std::byte>(data, data + kPageSize); };
  if (cur != this_pass_.end()) {
    ++n_.superseded;
    held_bytes_ -= cur->second.bytes.size();
    cur->second.bytes = copy();
    held_bytes_ += cur->second.bytes.size();
    return Status::ok();
  }
  if (may_hold()) {
    held_bytes_ += is_zero ? 0 : kPageSize;
    this_pass_.emplace(p, HeldPage{copy(), opt_.clock()});
    return Status::ok();
  }
  return send(p, is_zero ? nullptr : data);
}

// QEMU walks the main block upwards in each pass; an offset at or below the
// last one starts a new pass. Held pages the walk has gone past without a
// resend were clean for a whole pass: they go now.
Status DeparturePages::scan_reached(uint64_t page) {
  if (!last_page_ || page <= *last_page_) {
    ++n_.rounds;
    if (last_page_) {
      while (!prev_pass_.empty()) BNF_TRY(release(prev_pass_.extract(prev_pass_.begin())));
      prev_pass_.swap(this_pass_);
    }
    BNF_TRY(send_cooled());
    if (tick_) tick_(n_);  // a new pass: the downtime limit may change now, not thousands of records later
  }
  last_page_ = page;
  while (!prev_pass_.empty() && prev_pass_.begin()->first < page)
    BNF_TRY(release(prev_pass_.extract(prev_pass_.begin())));
  return Status::ok();
}

bool DeparturePages::still_hot(const HeldPage& h, std::chrono::steady_clock::time_point now) const {
  return now - h.seen < opt_.hot_window;
}

Status DeparturePages::release(Held::node_type node) {
  if (still_hot(node.mapped(), opt_.clock())) {
    cooling_.insert(std::move(node));
    return Status::ok();
  }
  return send_held(node.key(), node.mapped());
}

Status DeparturePages::send_cooled() {
  if (cooling_.empty()) return Status::ok();
  const auto now = opt_.clock();
  for (auto it = cooling_.begin(); it != cooling_.end();) {
    if (still_hot(it->second, now)) {
      ++it;
      continue;
    }
    BNF_TRY(send_held(it->first, it->second));
    it = cooling_.erase(it);
  }
  return Status::ok();
}

Status DeparturePages::send_all(Held& held) {
  for (auto& [page, h] : held) BNF_TRY(send_held(page, h));
  held.clear();
  return Status::ok();
}

Status DeparturePages::send_held(uint64_t page, const HeldPage& h) {
  held_bytes_ -= h.bytes.size();
  return send(page, h.bytes.empty() ? nullptr : h.bytes.data());
}

Status DeparturePages::send(uint64_t page, const std::byte* data) {
  Stopwatch sw(n_.send_s);
  const uint64_t batched = batch_.size() / kPageSize;
  if (data == nullptr) {  // after any batched version of the same page, in order
    BNF_TRY(flush_batch());
    const PageRun run{page, 1};
    return proto::post_run_frame(c_, proto::FrameType::zeros, std::span(&run, 1), {});
  }
  ++n_.sent;
  // A frame's run stays inside one shard chunk (the receiver checks it), as in pushes.
  if (batched != 0 && (page != batch_first_ + batched || batched == kBatchPages || page % kShardPages == 0))
    BNF_TRY(flush_batch());
  if (batch_.empty()) batch_first_ = page;
  batch_.insert(batch_.end(), data, data + kPageSize);
  return Status::ok();
}

Status DeparturePages::flush_batch() {
  if (batch_.empty()) return Status::ok();
  const PageRun run{batch_first_, batch_.size() / kPageSize};
  const transport::ConstBuffer contents{batch_.data(), batch_.size()};
  Status st = proto::post_run_frame(c_, proto::FrameType::pages, std::span(&run, 1), std::span(&contents, 1));
  batch_.clear();
  return st;
}

}  // namespace bnf::qemu
