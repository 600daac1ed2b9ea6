// The digest table of a running VM's memory, made mostly while it runs: a
// thread hashes the pages in order ahead of the stop, and at the stop only
// the pages the write tracker names (and those not reached) are hashed again.
// This is the switchover check's table; hashed whole at the stop, it costs the
// stopped VM's downtime ~70-200 ms per GiB here (memory bandwidth).
// Without a tracker nothing can be hashed ahead: finish() hashes every page.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
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
  std::string tracker_error;  // why the pages hashed ahead were not used ("" if they were)
};

class LiveDigestTable {
 public:
  // `tracker` must have started before this (it covers every write after the
  // hashes made here); null: no hashing ahead.
  LiveDigestTable(const PageDigester& h, std::span<const std::byte> ram, std::unique_ptr<WriteTracker> tracker,
                  LiveDigestOptions opt = {});
  ~LiveDigestTable();
  LiveDigestTable(const LiveDigestTable&) = delete;
  LiveDigestTable& operator=(const LiveDigestTable&) = delete;

  // Pages a stop now would leave to hash (not reached yet).
  [[nodiscard]] uint64_t pages_not_reached() const { return pages() - reached_; }
  [[nodiscard]] bool hashes_ahead() const { return tracker_ != nullptr; }
  // The VM has stopped: the table of its memory now, hashed on `threads` threads.
  DigestTable finish(unsigned threads);
  [[nodiscard]] const LiveDigestCounts& counts() const { return n_; }

 private:
  [[nodiscard]] uint64_t pages() const { return ram_.size() / kPageSize; }
  void run();
  bool pause(std::chrono::milliseconds d);  // false once stopped
  void stop();

  static constexpr uint64_t kPageSize = 4096;
  const PageDigester& h_;
  std::span<const std::byte> ram_;
  std::unique_ptr<WriteTracker> tracker_;
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
