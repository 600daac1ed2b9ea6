// Proves, while an incremental transfer runs, that a base image still holds
// the bytes its digest table says: a thread hashes every page in order and
// compares; a page about to be overwritten is checked first by the writer
// (check()), so nothing is lost to the race. Replaces a re-hash of the whole
// base before the transfer, which on a back trip cost as much as the trip.
#pragma once

#include <array>
#include <atomic>
#include <span>
#include <thread>
#include <vector>

#include "bitmap/page_bitmap.hpp"
#include "digest/page_digest.hpp"

namespace bnf {

class BaseCheck {
 public:
  // `holes`: the image's holes as it starts (file_holes; empty if unknown):
  // zero pages, checked without reading them (on tmpfs a read through the
  // mapping would allocate each).
  BaseCheck(std::span<const std::byte> image, uint32_t page_size, DigestTable expected, const PageDigester& h,
            PageBitmap holes = PageBitmap());
  ~BaseCheck();
  BaseCheck(const BaseCheck&) = delete;
  BaseCheck& operator=(const BaseCheck&) = delete;

  // Before page `page` is overwritten: checks it now unless that is done.
  void check(uint64_t page) noexcept;
  // Waits for every page to be checked; returns how many differ (0: proven).
  uint64_t finish();
  [[nodiscard]] bool finished() const { return finished_; }
  // The first pages found different (at most kExamples), for the error message.
  [[nodiscard]] std::vector<uint64_t> examples() const;
  static constexpr size_t kExamples = 4;

 private:
  void run() noexcept;
  std::span<const std::byte> image_;
  uint32_t page_size_;
  DigestTable expected_;
  PageDigester h_;
  PageBitmap holes_;
  PageBitmap claimed_;
  PageBitmap done_;
  std::atomic<uint64_t> mismatched_{0};
  std::array<std::atomic<uint64_t>, kExamples> examples_{};
  std::atomic<bool> stop_{false};
  bool finished_ = false;
  std::thread thread_;
};

}  // namespace bnf
