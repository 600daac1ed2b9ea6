// Shared mode's precopy on the source: bnf sends guest RAM itself, from the
// VM's RAM file, while QEMU's migration leaves that block out
// (x-ignore-shared). Round 0 sends what the destination does not hold:
// every page of a full trip that is not a hole of the file, or, against an
// agreed base, the pages written since the VM arrived here (the tracker's
// bitmap since arrival) or, where that was lost, the pages a digest scan
// finds changed. Each later round takes
// from the write tracker what the guest wrote since the last one; a page is
// sent once a round has gone by without a write to it, so a page the guest
// keeps writing is held back for the last round, which runs once QEMU has
// stopped the VM, before its device state goes on. The RoundPlanner decides
// when what is held back fits the downtime budget.
//
// Why the image is exact: a page's bytes are copied after the tracker was
// armed (round 0) or after the take that named it re-protected it, so a write
// during or after the copy is named by a later take, and the last take comes
// with the VM stopped. Each frame carries the copy, and what the destination
// holds (a StreamFilter, engine/filter) is the digest of that copy: VM_END's
// roots agree only if every page landed as copied.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bitmap/write_tracker.hpp"
#include "digest/page_digest.hpp"
#include "filter/stream_filter.hpp"
#include "precopy/round_planner.hpp"
#include "transport/transport.hpp"

namespace bnf::qemu {

struct SharedRoundCounts {
  uint64_t rounds = 0;  // after round 0, the last one included
  uint64_t pages_sent = 0, pages_zero = 0;
  uint64_t round0_pages = 0;  // sent (or zeroed) by round 0
  uint64_t final_pages = 0;   // sent (or zeroed) with the VM stopped
  uint64_t held_back = 0;     // written in the round before the stop: left to the last round
  double scan_s = 0, round0_s = 0, precopy_s = 0, final_s = 0, tracker_s = 0;
  std::string stopped_by;  // the planner's verdict
};

// Where round 0 of a trip against a base comes from: the pages written since
// arrival when this host's tracker has watched the VM since then, or a
// digest scan (none). `tracker` names the source for the report.
struct Round0Source {
  std::optional<PageBitmap> changed;
  std::chrono::steady_clock::time_point taken_at;  // when `changed` was taken
  std::string tracker;                             // "full trip", "since arrival" or "lost, digest scan"
  std::string tracker_lost;                        // why, for a digest scan
};

class SharedRounds {
 public:
  using Tick = std::function<void(const SharedRoundCounts&)>;
  // `ram` (mapped for the rounds' life) and `ram_fd` (its file: holes are
  // zero pages, never read). `base`: what the destination's image holds
  // (incremental), or none (full: a new image of zeros). `tracker` is armed
  // on every page and outlives the rounds.
  SharedRounds(transport::Connection& c, std::span<const std::byte> ram, int ram_fd, WriteTracker& tracker,
               const PageDigester& h, std::optional<DigestTable> base, Round0Source from, RoundBudget budget);

  // Round 0 and the rounds while the VM runs, until the planner stops them.
  Status precopy(const Tick& tick);
  // With the VM stopped: what was held back and what was written since.
  Status final_round();
  // What the destination's image holds: the VM's memory once final_round() returned.
  [[nodiscard]] const DigestTable& table() const { return filter_.receiver(); }
  [[nodiscard]] const SharedRoundCounts& counts() const { return n_; }
  // Pages the destination held already (never sent nor zeroed).
  [[nodiscard]] uint64_t pages_skipped() const { return pages_ - touched_.count(); }
  [[nodiscard]] nlohmann::json report() const;

 private:
  Result<PageBitmap> round0_pages();
  Result<PageBitmap> scan_changed(DigestTable& now, const PageBitmap& to_read);
  Result<PageBitmap> take();
  // Sends the pages of `which` the destination lacks, flushed; returns the payload bytes.
  Result<uint64_t> send_pages(const PageBitmap& which);
  Status send_staged(uint64_t& bytes);
  Status send_zero_runs();

  transport::Connection& c_;
  std::span<const std::byte> ram_;
  int ram_fd_;
  uint64_t pages_;
  WriteTracker& tracker_;
  const PageDigester& h_;
  bool incremental_;
  Round0Source from_;
  StreamFilter filter_;
  RoundPlanner planner_;
  PageBitmap pending_;              // written in the last round: sent once a round passes without a write
  PageBitmap touched_;              // sent or zeroed at least once
  std::vector<std::byte> staging_;  // pages copied for one frame
  std::vector<uint64_t> staged_;    // ... and which pages they are
  std::vector<PageRun> zero_runs_;  // pages now zero that the destination holds otherwise
  SharedRoundCounts n_;
};

}  // namespace bnf::qemu
