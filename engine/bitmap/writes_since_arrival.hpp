// The pages a VM's guest wrote since the VM arrived on this host: the write
// tracker armed on its QEMU before the guest ran there, kept armed while it
// runs, and every page a take has named since. A take re-protects what it
// names (shared mode's rounds take every round), so the pages taken are
// remembered here: a trip that fails after some rounds leaves the next one
// still knowing every page written since arrival.
//
// This is the bitmap model: a back trip's round 0 is exactly these pages, and
// the image the destination retains is the arrival image, so no one reads all
// of RAM. Only the arrival it was armed for (lineage and epoch) may use it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "bitmap/write_tracker.hpp"

namespace bnf {

class WritesSinceArrival final : public WriteTracker {
 public:
  // `tracker` was armed on every page of the VM's `pages` before its guest ran here.
  WritesSinceArrival(std::unique_ptr<WriteTracker> tracker, uint64_t pages);

  // The arrival committed as (`lineage`, `epoch`): the image the tracker started from.
  void arrived_as(std::string lineage, uint64_t epoch);
  [[nodiscard]] bool is_of(const std::string& lineage, uint64_t epoch) const;

  // Every page written since arrival; each is watched again from now on.
  [[nodiscard]] Result<PageBitmap> since_arrival();
  // What the tracker names since the last take, remembered as taken.
  [[nodiscard]] Result<PageBitmap> take_changed() override;
  // Every page written since arrival, without a take.
  [[nodiscard]] Result<PageBitmap> changed_since_start() override;

 private:
  std::unique_ptr<WriteTracker> tracker_;
  PageBitmap taken_;
  std::string lineage_;
  uint64_t epoch_ = 0;
  bool arrived_ = false;
};

// A VM's tracking since arrival, as the registry holds it: the tracker, or
// why there is none (said in a trip's report as "tracker: lost, digest scan").
struct ArrivalTracking {
  std::unique_ptr<WritesSinceArrival> writes;
  std::string lost_because = "the VM did not arrive here";
  void lose(std::string why) {
    writes.reset();
    lost_because = std::move(why);
  }
};

}  // namespace bnf
