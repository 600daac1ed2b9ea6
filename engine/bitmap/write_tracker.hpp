// A dirty tracker: which pages of a memory region may have changed since it
// started. A page it does not name is unchanged since then; naming more costs
// a re-read, naming fewer would be a lie, so an implementation that cannot
// tell names the page.
#pragma once

#include "bitmap/page_bitmap.hpp"
#include "common/status.hpp"

namespace bnf {

class WriteTracker {
 public:
  WriteTracker() = default;
  virtual ~WriteTracker() = default;
  WriteTracker(const WriteTracker&) = delete;
  WriteTracker& operator=(const WriteTracker&) = delete;

  // The pages that may differ from their bytes when tracking started.
  [[nodiscard]] virtual Result<PageBitmap> changed_since_start() = 0;
  // Rounds (shared mode): the pages that may have changed since the last
  // take (or the start), each watched again from now on. A write that races
  // with the take is in this round's answer or the next one's, never lost.
  [[nodiscard]] virtual Result<PageBitmap> take_changed() = 0;
};

}  // namespace bnf
