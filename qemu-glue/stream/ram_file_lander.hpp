// A PageHandler that lands the pages of one RAM block in a memory-backend file
// (the destination's RAM file, holding its base) and takes them out of the
// stream. Pages the file already holds byte for byte are not even written.
#pragma once

#include <memory>
#include <string>

#include "common/unique_fd.hpp"
#include "stream/stream_rewriter.hpp"

namespace bnf::qemu {

struct LanderStats {
  uint64_t landed = 0;  // written into the RAM file
  uint64_t same = 0;    // already there
  uint64_t zeroed = 0;  // ZERO records applied to the file
  uint64_t passed = 0;  // pages of other blocks, left in the stream
};

class RamFileLander final : public PageHandler {
 public:
  static Result<std::unique_ptr<RamFileLander>> open(const std::string& path, std::string block);
  Status on_blocks(const std::vector<RamBlockInfo>& blocks) override;
  Result<bool> on_page(const std::string& block, uint64_t offset, const std::byte* data) override;
  Result<bool> on_zero(const std::string& block, uint64_t offset) override;
  [[nodiscard]] const LanderStats& stats() const { return stats_; }

 private:
  RamFileLander(UniqueFd fd, std::string path, std::string block)
      : fd_(std::move(fd)), path_(std::move(path)), block_(std::move(block)) {}
  Status check_offset(uint64_t offset) const;
  UniqueFd fd_;
  std::string path_;
  std::string block_;
  Mapping map_;
  LanderStats stats_;
};

}  // namespace bnf::qemu
