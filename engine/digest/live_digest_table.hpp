// The digest table of a running VM's memory, made mostly while it runs: a
// thread hashes the pages in order ahead of the stop, and at the stop only
// the pages the write tracker names (and those not reached) are hashed again.
// This is the switchover check's table; hashed whole at the stop, it costs the
// stopped VM's downtime ~70-200 ms per GiB here (memory bandwidth).
// The tracker is started by the thread's first step, so a trip that never
// leaves idle CPU (a CPU-bound pass) pays nothing for it; where it cannot
// start, the steps only fault the mapping in (as Prefault would) and finish()
// hashes every page.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "bitmap/write_tracker.hpp"
#include "digest/page_digest.hpp"

namespace bnf {

struct LiveDigestOptions {
  // Take a step only after 100 ms in which the machine had half a core idle
  // (see Prefault): a CPU-bound migration would only be slowed.
  bool when_idle = true;
  uint64_t step_pages = 16384;  // 64 MiB: faulted in, then hashed
};

struct LiveDigestCounts {
  uint64_t hashed_ahead = 0;  // pages hashed while the VM ran
  uint64_t hashed_at_stop = 0;
  uint64_t faulted_in = 0;  // pages of the mapping faulted in before the stop
  bool tracked = false;     // the pages hashed ahead were used at the stop
  std::string not_tracked_because;
};

using StartWriteTracker = std::function<Result<std::unique_ptr<WriteTracker>>()>;

class LiveDigestTable {
 public:
  // `start_tracker` starts tracking the writes to `ram` (null: no hashing ahead).
  LiveDigestTable(const PageDigester& h, std::span<const std::byte> ram, StartWriteTracker start_tracker,
                  LiveDigestOptions opt = {});
  ~LiveDigestTable();
  LiveDigestTable(const LiveDigestTable&) = delete;
  LiveDigestTable& operator=(const LiveDigestTable&) = delete;

  // Pages a stop now would leave to hash (not reached yet).
  [[nodiscard]] uint64_t pages_not_reached() const { return pages() - reached_; }
  // Whether writes are tracked (the first step started the tracker).
  [[nodiscard]] bool tracking() const { return tracking_.load(std::memory_order_acquire); }
  // How many pages were written since tracking started.
  Result<uint64_t> pages_written();
  // The VM has stopped: the table of its memory now, hashed on `threads` threads.
  DigestTable finish(unsigned threads);
  [[nodiscard]] const LiveDigestCounts& counts() const { return n_; }

 private:
  [[nodiscard]] uint64_t pages() const { return ram_.size() / kPageSize; }
  void run();
  void step(uint64_t from, uint64_t to);
  bool pause(std::chrono::milliseconds d);  // false once stopped
  void stop();

  static constexpr uint64_t kPageSize = 4096;
  const PageDigester& h_;
  std::span<const std::byte> ram_;
  StartWriteTracker start_tracker_;
  std::unique_ptr<WriteTracker> tracker_;  // set by the thread before tracking_
  std::atomic<bool> tracking_{false};
  LiveDigestOptions opt_;
  DigestTable table_;
  std::atomic<uint64_t> reached_{0};  // pages [0, reached_) hashed ahead
  LiveDigestCounts n_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace bnf
