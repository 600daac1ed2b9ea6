// The digest table of a running VM's memory, made mostly while it runs: a
// thread hashes the pages in order ahead of the stop, and at the stop only
// the pages the write tracker names (and those not reached) are hashed again.
// This is the switchover check's table; hashed whole at the stop, it costs the
// stopped VM's downtime ~70-200 ms per GiB here (memory bandwidth).
//
// The tracker was started before QEMU's pass read the page (all pages past
// `read_before_tracking`), so a page it does not name kept its bytes since
// before QEMU read it: QEMU read them as they are at the stop. The check can
// therefore compare the written and hashed-ahead pages in the downtime
// (finish_written) and hash the rest once the VM runs on (finish). Without a
// tracker, the steps only fault the mapping in (as Prefault would) and every
// page is hashed at the stop.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "bitmap/write_tracker.hpp"
#include "common/page.hpp"
#include "digest/page_digest.hpp"

namespace bnf {

struct LiveDigestOptions {
  // Take a step only after 100 ms in which the machine had half a core idle
  // (see Prefault): a CPU-bound migration would only be slowed.
  bool when_idle = true;
  // ... and, with writes tracked, hash for this share of one core's time when
  // the machine is busy: a CPU-bound pass leaves no idle time, and every page
  // not hashed ahead is hashed in the downtime (~100-200 ms per GiB here).
  double busy_core_share = 0;
  uint64_t step_pages = 16384;  // 64 MiB: faulted in, then hashed
  // Pages [0, read_before_tracking) QEMU may have read before the tracker
  // started: compared in the downtime whatever the tracker says.
  uint64_t read_before_tracking = 0;
  // The file `ram` maps: its holes at the stop are zero pages, whose digest
  // is known without reading them (which on tmpfs would allocate them).
  int ram_file = -1;
};

struct LiveDigestCounts {
  uint64_t hashed_ahead = 0;  // pages hashed while the VM ran
  uint64_t hashed_at_stop = 0;
  uint64_t hashed_after = 0;  // by finish() after finish_written(): neither written nor reached
  double hashed_after_s = 0;  // ... how long that took
  uint64_t holes = 0;         // zero pages known from the file's holes at the stop, not read
  uint64_t faulted_in = 0;    // pages of the mapping faulted in before the stop
  bool tracked = false;       // the tracker's pages were used at the stop
  std::string not_tracked_because;
};

class LiveDigestTable {
 public:
  // `tracker` names the pages written to `ram` since before QEMU's pass
  // began; null if there is none (`why_not` says why). `h` is copied.
  LiveDigestTable(const PageDigester& h, std::span<const std::byte> ram, std::unique_ptr<WriteTracker> tracker,
                  std::string why_not, LiveDigestOptions opt = {});
  ~LiveDigestTable();
  LiveDigestTable(const LiveDigestTable&) = delete;
  LiveDigestTable& operator=(const LiveDigestTable&) = delete;

  // Pages a stop now would leave to hash (not reached yet).
  [[nodiscard]] uint64_t pages_not_reached() const { return pages() - reached_; }
  [[nodiscard]] bool tracking() const { return tracker_ != nullptr; }
  // How many pages were written since tracking started.
  Result<uint64_t> pages_written();
  // The VM has stopped: hashes the pages written since tracking began (all
  // not hashed ahead, without a tracker) on `threads` threads, and returns
  // the pages whose digests in table() are now the stopped VM's. The others
  // were neither written nor reached: their bytes are the ones QEMU read.
  PageBitmap finish_written(unsigned threads);
  // The table of the stopped VM's memory: hashes what finish_written left
  // (or, without it, what was written or not reached).
  DigestTable finish(unsigned threads);
  // The table so far (after finish_written: final where it said so).
  [[nodiscard]] const DigestTable& table() const { return table_; }
  [[nodiscard]] const LiveDigestCounts& counts() const { return n_; }

 private:
  [[nodiscard]] uint64_t pages() const { return ram_.size() / kPageSize; }
  void run();
  // Steps over [from, to) until `until`; returns the page it reached.
  uint64_t step(uint64_t from, uint64_t to, std::chrono::steady_clock::time_point until);
  bool pause(std::chrono::milliseconds d);  // false once stopped
  void stop();
  // The pages the tracker names (nullopt: untracked, or it failed now).
  std::optional<PageBitmap> written_at_stop();
  // Takes the file's holes out of `todo` (their digests set to the zero
  // page's) and adds them to `final_pages`.
  void settle_holes(PageBitmap& todo, PageBitmap& final_pages);
  // Hashes at the stop what was written, and what QEMU may have read before
  // the tracker started ([0, read_before)) and was not hashed ahead; the
  // pages whose digests are then final (finish_written's answer).
  PageBitmap hash_at_stop(unsigned threads, uint64_t read_before);

  // Two threads use it: the caller's (every public method) and thread_,
  // which hashes ahead from construction until stop() joins it (the first
  // thing finish_written and finish do, and the destructor). No lock guards
  // the table: thread_ alone writes table_[0, reached_), n_.faulted_in and
  // n_.hashed_ahead until the join; the caller reads them only after it,
  // except reached_ (atomic, pages_not_reached). tracker_ is the caller's:
  // thread_ only asks whether it exists. h_, ram_ and opt_ are read by both
  // and never written after construction.
  const PageDigester h_;  // a copy: the table's rest may be hashed after its maker's digester is gone
  std::span<const std::byte> ram_;
  std::unique_ptr<WriteTracker> tracker_;
  LiveDigestOptions opt_;
  DigestTable table_;
  std::atomic<uint64_t> reached_{0};  // pages [0, reached_) hashed ahead
  std::optional<PageBitmap> final_;   // the caller's, set by finish_written: digests final there
  LiveDigestCounts n_;
  std::mutex mu_;  // only for wake_: pause() sleeps on it, stop() wakes it
  std::condition_variable wake_;
  std::atomic<bool> stop_{false};  // set under mu_ (for wake_); a step reads it without
  std::thread thread_;
};

}  // namespace bnf
