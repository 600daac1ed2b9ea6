#include "bitmap/writes_since_arrival.hpp"

#include <utility>

namespace bnf {

WritesSinceArrival::WritesSinceArrival(std::unique_ptr<WriteTracker> tracker, uint64_t pages)
    : tracker_(std::move(tracker)), taken_(pages) {}

void WritesSinceArrival::arrived_as(std::string lineage, uint64_t epoch) {
  lineage_ = std::move(lineage);
  epoch_ = epoch;
  arrived_ = true;
}

bool WritesSinceArrival::is_of(const std::string& lineage, uint64_t epoch) const {
  return arrived_ && lineage == lineage_ && epoch == epoch_;
}

Result<PageBitmap> WritesSinceArrival::take_changed() {
  BNF_ASSIGN_OR_RETURN(PageBitmap now, tracker_->take_changed());
  BNF_TRY(taken_.unite(now));
  return now;
}

Result<PageBitmap> WritesSinceArrival::since_arrival() {
  BNF_TRY(take_changed().status());
  return taken_;
}

Result<PageBitmap> WritesSinceArrival::changed_since_start() {
  BNF_ASSIGN_OR_RETURN(PageBitmap since_take, tracker_->changed_since_start());
  BNF_TRY(since_take.unite(taken_));
  return since_take;
}

}  // namespace bnf
