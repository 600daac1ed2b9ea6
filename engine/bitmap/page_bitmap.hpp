// PageBitmap: one bit per page of a memory region. The set of pages a trip has
// to carry (dirty since arrival, changed since the base) is always one of these.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/status.hpp"

namespace bnf {

struct PageRun {
  uint64_t first = 0;  // first page index
  uint64_t count = 0;  // pages in the run
  bool operator==(const PageRun&) const = default;
};

// Pages covered by a list of runs.
[[nodiscard]] uint64_t pages_in(std::span<const PageRun> runs) noexcept;

class PageBitmap {
 public:
  static constexpr uint64_t npos = UINT64_MAX;

  PageBitmap() = default;
  explicit PageBitmap(uint64_t pages);

  [[nodiscard]] uint64_t size() const noexcept { return pages_; }

  // Atomic per-bit operations: safe from several threads on one bitmap.
  void set(uint64_t page) noexcept;
  void clear(uint64_t page) noexcept;
  [[nodiscard]] bool test(uint64_t page) const noexcept;
  // Atomically sets the bit; returns whether it was already set.
  bool test_and_set(uint64_t page) noexcept;

  void set_range(uint64_t first, uint64_t count) noexcept;
  void clear_range(uint64_t first, uint64_t count) noexcept;
  void set_all() noexcept;
  void clear_all() noexcept;

  [[nodiscard]] uint64_t find_next_set(uint64_t from) const noexcept;
  [[nodiscard]] uint64_t find_next_clear(uint64_t from) const noexcept;
  [[nodiscard]] uint64_t count() const noexcept;

  // Calls fn for each maximal run of set bits, in order.
  void for_each_run(const std::function<void(PageRun)>& fn) const;
  [[nodiscard]] std::vector<PageRun> runs() const;

  // Bulk set algebra; both bitmaps must have the same size.
  // `other` may be getting bits set meanwhile (read atomically); `this` is the caller's alone.
  Status unite(const PageBitmap& other);     // this |= other
  Status subtract(const PageBitmap& other);  // this &= ~other

  // Compact form: header + either raw words or a run list, whichever is smaller,
  // protected by CRC32C. deserialize() validates every field.
  [[nodiscard]] std::string serialize() const;
  static Result<PageBitmap> deserialize(std::string_view data);

  bool operator==(const PageBitmap& o) const { return pages_ == o.pages_ && words_ == o.words_; }

 private:
  uint64_t pages_ = 0;
  std::vector<uint64_t> words_;
};

}  // namespace bnf
