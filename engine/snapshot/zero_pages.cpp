#include "snapshot/zero_pages.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <vector>

#include "common/files.hpp"

namespace bnf {

namespace {

Result<uint64_t> allocated_bytes(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_status("stat the snapshot image", errno);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

// Punches [first, first + n) pages out of `fd`.
Status punch(int fd, uint64_t first, uint64_t n, uint32_t page_size) {
  if (n == 0) return Status::ok();
  return punch_hole(fd, first * page_size, n * page_size).context("release the snapshot image's zero pages");
}

}  // namespace

Result<uint64_t> release_zero_pages(int fd, const DigestTable& table, const Digest& zero, uint32_t page_size) {
  constexpr uint64_t kChunkPages = 256;
  BNF_ASSIGN_OR_RETURN(uint64_t before, allocated_bytes(fd));
  std::vector<std::byte> buf(kChunkPages * page_size);
  for (uint64_t p = 0; p < table.size();) {
    if (!(table[p] == zero)) {
      ++p;
      continue;
    }
    uint64_t end = p;
    while (end < table.size() && end - p < kChunkPages && table[end] == zero) ++end;
    // The table says what the bytes were; they are read to be sure (a pread
    // of a hole allocates nothing), and only zeros are punched out.
    BNF_TRY(pread_all(fd, buf.data(), (end - p) * page_size, p * page_size));
    uint64_t from = p;
    for (uint64_t q = p; q < end; ++q) {
      if (is_zero_page(buf.data() + (q - p) * page_size, page_size)) continue;
      BNF_TRY(punch(fd, from, q - from, page_size));
      from = q + 1;
    }
    BNF_TRY(punch(fd, from, end - from, page_size));
    p = end;
  }
  BNF_ASSIGN_OR_RETURN(uint64_t after, allocated_bytes(fd));
  return before > after ? before - after : 0;
}

}  // namespace bnf
