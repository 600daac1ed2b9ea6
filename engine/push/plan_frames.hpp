// A page plan as frames: the pages it sends as PAGES frames (consecutive pages
// in one frame, their bytes straight from the image) and the pages it zeroes
// as ZEROS frames: one stream's share of an image push.
#pragma once

#include <cstdint>
#include <span>

#include "filter/page_filter.hpp"
#include "transport/transport.hpp"

namespace bnf {

struct PlanPosted {
  uint64_t frames = 0;
  uint64_t pages = 0;  // pages sent with their bytes
};

// Posts stream `stream`'s share (of `streams`) of `plan`. Bytes inside a
// region registered on `c` must stay mapped and unchanged until the next
// flush.
Result<PlanPosted> post_plan(transport::Connection& c, std::span<const std::byte> image, const PagePlan& plan,
                             unsigned stream, unsigned streams);

}  // namespace bnf
