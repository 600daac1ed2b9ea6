// The streaming page filter: plan_pages' decision for pages that arrive one
// record at a time (a VM's migration stream), each page possibly many times.
// It keeps what the receiver's image will hold (its base at first; all zero
// pages for a new image; then every version let through) and lets a record
// through only when its digest differs from that. At the end that table is
// the sender's memory as the last records had it: the receiver's next base.
//
// When a page let through actually travels (sent at once, or held back until
// QEMU's passes show it cooled down) is the caller's business.
#pragma once

#include <cstdint>
#include <optional>

#include "digest/page_digest.hpp"

namespace bnf {

class StreamFilter {
 public:
  enum class Verdict {
    skip,  // the receiver holds (or will hold) these bytes
    send,  // it needs them: from now on its table says `d`
  };

  // `base`: the receiver's image as its table says; none: a new image of `pages` zero pages.
  StreamFilter(const PageDigester& h, std::optional<DigestTable> base, uint64_t pages);

  // A record of page `page` (below pages()) with digest `d`.
  [[nodiscard]] Verdict offer(uint64_t page, const Digest& d) {
    if (receiver_[page] == d) return Verdict::skip;
    receiver_[page] = d;
    return Verdict::send;
  }
  [[nodiscard]] bool is_zero(const Digest& d) const { return d == zero_; }
  [[nodiscard]] uint64_t pages() const { return receiver_.size(); }
  // What the receiver's image holds once everything let through has landed.
  [[nodiscard]] const DigestTable& receiver() const { return receiver_; }

 private:
  DigestTable receiver_;
  Digest zero_;
};

}  // namespace bnf
