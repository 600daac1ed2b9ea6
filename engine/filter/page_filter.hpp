// The page filter: decides, page by page, what a trip must carry. A page is
//   skipped  when the receiver's base provably holds the same bytes (digests equal),
//   zeroed   when it is now all zero and the base page is not (a ZEROS run, no payload),
//   sent     otherwise.
// With a dirty bitmap, only flagged pages are examined (the bitmap model); every
// other page is taken to equal the base. Without one, every page is digested.
#pragma once

#include <optional>
#include <span>

#include "bitmap/page_bitmap.hpp"
#include "common/page.hpp"
#include "digest/page_digest.hpp"

namespace bnf {

struct PagePlan {
  PageBitmap send;
  PageBitmap zero;
  DigestTable table;  // digests of the image after the trip (the receiver's next base)
  uint64_t pages_total = 0;
  uint64_t pages_sent = 0;
  uint64_t pages_zero = 0;     // zero pages: not sent as data (ZEROS run or already zero)
  uint64_t pages_skipped = 0;  // equal to the base: not sent at all
};

struct FilterInput {
  std::span<const std::byte> image;
  uint64_t page_size = kPageSize;
  const PageDigester* digester = nullptr;
  const DigestTable* base = nullptr;  // null: no base, everything non-zero travels
  const PageBitmap* dirty = nullptr;  // null: digest every page
  unsigned threads = 1;
};

PagePlan plan_pages(const FilterInput& in);

}  // namespace bnf
