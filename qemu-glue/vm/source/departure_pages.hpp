// The source's page handler for a relayed VM migration: for every main-block
// page record QEMU emits, whether the destination needs it, and when.
//
// What: the streaming page filter decides (engine/filter/stream_filter.hpp):
// a record travels only when its digest differs from what the destination's
// image will hold. At the end its table is the VM's memory at switchover.
//
// When (hold-back): precopy resends a page every pass in which the guest wrote
// it, so a hot page sent at once crosses the wire once per pass. A page that
// differs from the destination is instead held here until QEMU's next pass
// goes by its offset without resending it; a page rewritten every pass waits
// for the final pass and travels once. A pass is not a measure of time,
// though: QEMU re-decides whether to stop only every 100 ms (its stop
// threshold is bandwidth x downtime limit, recomputed at that rate), and in
// between it can make passes a millisecond long, which a page rewritten every
// 100 ms passes through clean (seen: 130 such passes, hot pages sent up to 4
// times). So a page also waits until it was not rewritten for `hot_window`.
// Held pages are all sent before device
// state is forwarded, so the destination QEMU never starts without them. The
// hold-back is bounded (past the budget pages go at once) and applies to
// incremental trips only: in a full trip QEMU would see resends vanish into
// the hold-back, overestimate the bandwidth, stop the VM early and leave more
// for the downtime (measured: ~170 ms against ~160 ms without, 256 MiB, 1 Gbit/s).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "bitmap/write_tracker.hpp"
#include "digest/page_digest.hpp"
#include "filter/stream_filter.hpp"
#include "stream/stream_rewriter.hpp"
#include "transport/transport.hpp"

namespace bnf::qemu {

// Two of QEMU's 100 ms stop decisions (see above).
inline constexpr std::chrono::milliseconds kQemuHotWindow{200};

struct DeparturePagesOptions {
  bool incremental = false;
  size_t hold_budget_bytes = 0;  // 0 disables the hold-back
  // A held page leaves once clean for a whole pass and this long; 0: a whole
  // pass is enough.
  std::chrono::milliseconds hot_window{0};
  std::function<std::chrono::steady_clock::time_point()> clock = [] { return std::chrono::steady_clock::now(); };
  // The source's RAM (read-only mapping of the VM's RAM file). When set, it is
  // re-hashed once the VM has stopped, and every page whose bytes differ from
  // the last version QEMU sent is sent again before the device state: QEMU
  // 7.2 under TCG was measured to lose guest writes made shortly before the
  // stop (the destination then resumes with stale pages; native QEMU too).
  std::span<const std::byte> switchover_check;
  // The file `switchover_check` maps: its holes at the stop are zero pages,
  // known without reading them (on tmpfs a read through the mapping would
  // allocate each; few are left by then, QEMU's pass has read them).
  int ram_file = -1;
  // QEMU's writes since before it read the RAM for this trip (started before
  // `migrate`): at the stop only the pages it names, and any QEMU did not
  // send in this trip, are re-hashed; every other page still holds the bytes
  // of the version QEMU sent. Null: every page is re-hashed.
  std::unique_ptr<WriteTracker> write_tracker;
};

struct DeparturePageCounts {
  uint64_t sent = 0;                 // data pages posted
  uint64_t skipped = 0;              // records the destination already held
  uint64_t zero = 0;                 // zero-page records (sent or skipped)
  uint64_t superseded = 0;           // held versions replaced by a newer one before sending
  uint64_t rounds = 0;               // QEMU's passes over the main block
  uint64_t fixed_at_switchover = 0;  // pages QEMU did not resend though they had changed
  double digest_s = 0;               // time spent hashing pages
  double send_s = 0;                 // time spent posting pages (copies, transport back-pressure)
  double final_section_s = 0;        // VM stopped: final RAM section start -> device state may go
  double rehash_wait_s = 0;          // ... of it waiting for the switchover check's re-hash
  uint64_t hashed_at_stop = 0;       // pages the switchover check re-hashed
  std::string tracker_error;         // why the write tracker was not used at the stop ("" if it was)
};

class DeparturePages final : public PageHandler {
 public:
  DeparturePages(transport::Connection& c, const PageDigester& h, std::optional<DigestTable> base, uint64_t pages,
                 DeparturePagesOptions opt);
  ~DeparturePages() override;
  DeparturePages(const DeparturePages&) = delete;
  DeparturePages& operator=(const DeparturePages&) = delete;
  Status on_blocks(const std::vector<RamBlockInfo>& blocks) override;
  Result<bool> on_page(const std::string& block, uint64_t offset, const std::byte* data) override;
  Result<bool> on_zero(const std::string& block, uint64_t offset) override;
  Status on_final_ram_section() override;
  Status before_device_state() override;
  // Posts the pages batched so far (before_device_state() does it too).
  Status flush_batch();

  // Called at every new pass and every few thousand records (progress, the downtime limit).
  void on_tick(std::function<void(const DeparturePageCounts&)> tick) { tick_ = std::move(tick); }
  [[nodiscard]] const DigestTable& departure() const { return filter_.receiver(); }
  [[nodiscard]] const DeparturePageCounts& counts() const { return n_; }

 private:
  struct HeldPage {
    std::vector<std::byte> bytes;                // empty: zero page
    std::chrono::steady_clock::time_point seen;  // the page's last record
  };
  using Held = std::map<uint64_t, HeldPage>;
  Status update(uint64_t page, const Digest& d, const std::byte* data);
  Status scan_reached(uint64_t page);
  Status send(uint64_t page, const std::byte* data);   // nullptr: a zero page
  Status send_held(uint64_t page, const HeldPage& h);  // and no longer counted as held
  Status send_all(Held& held);
  Status release(Held::node_type node);  // clean for a pass: sent, or cooling until the window passed
  Status send_cooled();
  [[nodiscard]] bool still_hot(const HeldPage& h, std::chrono::steady_clock::time_point now) const;
  void rehash_at_stop();  // on rehash_thread_
  Status fix_up_from_rehash();
  [[nodiscard]] bool may_hold() const;

  // Two threads use it: the stream's reader (every on_* call and
  // before_device_state) and, from the final RAM section to its join in
  // fix_up_from_rehash, rehash_thread_. The reader owns everything but what
  // is marked as the rehash thread's below; that thread reads opt_,
  // filter_.pages() and seen_ (whose bits are atomic), and writes only the
  // rehash_ group, which the reader reads after the join. No lock.
  transport::Connection& c_;
  const PageDigester& h_;
  StreamFilter filter_;
  DeparturePagesOptions opt_;
  DeparturePageCounts n_;
  Held prev_pass_;  // held in the previous pass, not resent in this one yet
  Held this_pass_;  // held (or resent) in this pass
  Held cooling_;    // clean for a pass, but rewritten within the hot window
  size_t held_bytes_ = 0;
  std::optional<uint64_t> last_page_;
  // Consecutive pages travel as one PAGES frame (one header per 256 KiB, not
  // per page: in a full trip headers would be 1% of the wire).
  static constexpr uint64_t kBatchPages = 64;
  std::vector<std::byte> batch_;
  uint64_t batch_first_ = 0;
  std::thread rehash_thread_;  // switchover check: hashes the stopped VM's RAM
  std::optional<std::chrono::steady_clock::time_point> final_section_at_;
  // The rehash thread's, until its join:
  std::optional<DigestTable> rehash_;  // the pages `rehashed_` names
  PageBitmap rehashed_;
  uint64_t rehashed_count_ = 0;
  std::string tracker_error_;
  PageBitmap seen_;  // pages QEMU sent in this trip (set by the reader, read by the rehash thread)
  std::function<void(const DeparturePageCounts&)> tick_;
  uint64_t records_ = 0;
};

}  // namespace bnf::qemu
