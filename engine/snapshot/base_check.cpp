#include "snapshot/base_check.hpp"

#include <algorithm>

namespace bnf {

BaseCheck::BaseCheck(std::span<const std::byte> image, uint32_t page_size, DigestTable expected, const PageDigester& h,
                     PageBitmap holes)
    : image_(image),
      page_size_(page_size),
      expected_(std::move(expected)),
      h_(h),
      holes_(holes.size() == expected_.size() ? std::move(holes) : PageBitmap(expected_.size())),
      claimed_(expected_.size()),
      done_(expected_.size()),
      thread_([this] { run(); }) {}

BaseCheck::~BaseCheck() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void BaseCheck::check(uint64_t page) noexcept {
  if (claimed_.test_and_set(page)) {  // the thread has it: wait until it is done (one page's hash)
    while (!done_.test(page)) std::this_thread::yield();
    return;
  }
  const Digest now = holes_.test(page) ? h_.zero_digest() : h_.page(image_.data() + page * page_size_, page_size_);
  if (!(now == expected_[page])) {
    const uint64_t n = mismatched_++;
    if (n < kExamples) examples_[n] = page;
  }
  done_.set(page);
}

void BaseCheck::run() noexcept {
  for (uint64_t p = 0; p < expected_.size() && !stop_; ++p) check(p);
}

std::vector<uint64_t> BaseCheck::examples() const {
  std::vector<uint64_t> v;
  for (size_t i = 0; i < std::min<uint64_t>(kExamples, mismatched_.load()); ++i) v.push_back(examples_[i]);
  return v;
}

uint64_t BaseCheck::finish() {
  if (thread_.joinable()) thread_.join();
  finished_ = true;
  return stop_ ? expected_.size() : mismatched_.load();
}

}  // namespace bnf
