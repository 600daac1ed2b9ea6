#include "filter/page_filter.hpp"

namespace bnf {

namespace {
// Classifies one page whose new digest is `now`.
void classify(PagePlan& plan, const FilterInput& in, uint64_t p, const Digest& now) {
  const Digest zero = in.digester->zero_digest();
  plan.table[p] = now;
  if (in.base != nullptr && (*in.base)[p] == now) {
    ++plan.pages_skipped;
  } else if (now == zero) {
    ++plan.pages_zero;
    if (in.base != nullptr) plan.zero.set(p);  // without a base the receiver's page is already zero
  } else {
    ++plan.pages_sent;
    plan.send.set(p);
  }
}
}  // namespace

PagePlan plan_pages(const FilterInput& in) {
  const uint64_t pages = in.image.size() / in.page_size;
  PagePlan plan{PageBitmap(pages), PageBitmap(pages), {}, pages, 0, 0, 0};
  if (in.dirty != nullptr && in.base != nullptr) {
    plan.table = *in.base;
    plan.pages_skipped = pages - in.dirty->count();
    in.dirty->for_each_run([&](PageRun r) {
      for (uint64_t p = r.first; p < r.first + r.count; ++p)
        classify(plan, in, p, in.digester->page(in.image.data() + p * in.page_size, in.page_size));
    });
    return plan;
  }
  plan.table = DigestTable::compute(*in.digester, in.image, in.page_size, in.threads);
  for (uint64_t p = 0; p < pages; ++p) classify(plan, in, p, plan.table[p]);
  return plan;
}

}  // namespace bnf
