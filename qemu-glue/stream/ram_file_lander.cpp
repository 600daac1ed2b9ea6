#include "stream/ram_file_lander.hpp"

#include <fcntl.h>
#include <fmt/format.h>

#include <cstring>

#include "common/files.hpp"
#include "common/page.hpp"
#include "digest/page_digest.hpp"

namespace bnf::qemu {

Result<std::unique_ptr<RamFileLander>> RamFileLander::open(const std::string& path, std::string block) {
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_RDWR | O_CREAT));
  return std::unique_ptr<RamFileLander>(new RamFileLander(std::move(fd), path, std::move(block)));
}

Status RamFileLander::on_blocks(const std::vector<RamBlockInfo>& blocks) {
  for (const RamBlockInfo& b : blocks) {
    if (b.name != block_) continue;
    BNF_ASSIGN_OR_RETURN(uint64_t size, file_size(fd_.get()));
    if (size != 0 && size != b.used_length)
      return {Errc::mismatch, fmt::format("size mismatch: RAM file {} is {} bytes, block '{}' is {}", path_, size,
                                          block_, b.used_length)};
    if (size == 0 && ::ftruncate(fd_.get(), static_cast<off_t>(b.used_length)) != 0)
      return errno_status("size " + path_, errno);
    BNF_ASSIGN_OR_RETURN(map_, map_file(fd_.get(), b.used_length, true));
    return Status::ok();
  }
  return {Errc::not_found, "the stream has no RAM block named '" + block_ + "'"};
}

Status RamFileLander::check_offset(uint64_t offset) const {
  if (offset % kPageSize != 0 || offset >= map_.size())
    return {Errc::protocol, fmt::format("page offset 0x{:x} outside block '{}'", offset, block_)};
  return Status::ok();
}

Result<bool> RamFileLander::on_page(const std::string& block, uint64_t offset, const std::byte* data) {
  if (block != block_) {
    ++stats_.passed;
    return true;
  }
  BNF_TRY(check_offset(offset));
  std::byte* dst = map_.data() + offset;
  if (std::memcmp(dst, data, kPageSize) == 0) {
    ++stats_.same;
  } else {
    std::memcpy(dst, data, kPageSize);
    ++stats_.landed;
  }
  return false;
}

Result<bool> RamFileLander::on_zero(const std::string& block, uint64_t offset) {
  if (block != block_) return true;
  BNF_TRY(check_offset(offset));
  std::byte* dst = map_.data() + offset;
  if (!is_zero_page(dst, kPageSize)) {
    std::memset(dst, 0, kPageSize);
    ++stats_.zeroed;
  }
  return false;
}

}  // namespace bnf::qemu
