#include "filter/stream_filter.hpp"

namespace bnf {

StreamFilter::StreamFilter(const PageDigester& h, std::optional<DigestTable> base, uint64_t pages)
    : receiver_(base ? std::move(*base) : DigestTable(pages)), zero_(h.zero_digest()) {
  if (!base)
    for (uint64_t p = 0; p < pages; ++p) receiver_[p] = zero_;
}

}  // namespace bnf
