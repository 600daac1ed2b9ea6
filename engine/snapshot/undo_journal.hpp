// Undo journal: before a page of a committed image is overwritten, its old
// contents are appended here and made durable. If the transfer dies, replaying
// the journal puts every touched page back: the committed epoch is intact.
// One journal per data stream (pages are sharded by stream), so streams never
// contend for it.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/page.hpp"
#include "common/status.hpp"
#include "common/unique_fd.hpp"

namespace bnf {

class UndoJournal {
 public:
  static Result<UndoJournal> create(const std::string& path, uint64_t base_epoch, uint32_t page_size);

  // Appends (page index, old contents) for each page, taking the contents from
  // the mapped image, in as few writes as the iovec limit allows. Call sync()
  // before overwriting any of them.
  Status append_all(std::span<const uint64_t> pages, const std::byte* image_base);
  Status sync();
  [[nodiscard]] uint64_t entries() const { return entries_; }

  // Applies every complete entry of the journal at `path` to `image_fd`; a torn
  // tail is ignored (its page was never overwritten). Returns pages restored.
  static Result<uint64_t> roll_back(const std::string& path, int image_fd, uint64_t image_pages);
  static Result<uint64_t> base_epoch(const std::string& path);

 private:
  UndoJournal(UniqueFd fd, uint32_t page_size) : fd_(std::move(fd)), page_size_(page_size) {}
  UniqueFd fd_;
  uint32_t page_size_ = kPageSize;
  uint64_t offset_ = 0;
  uint64_t entries_ = 0;
};

}  // namespace bnf
