#include "snapshot/undo_journal.hpp"

#include <fcntl.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/crc32c.hpp"
#include "common/files.hpp"

namespace bnf {

namespace {
constexpr uint32_t kMagic = 0x4A464E42;  // "BNFJ"
constexpr uint32_t kVersion = 1;

struct JournalHeader {
  uint32_t magic;
  uint32_t version;
  uint64_t base_epoch;
  uint32_t page_size;
  uint32_t crc;  // over the fields above
};
struct EntryHeader {
  uint64_t page;
  uint32_t data_crc;
  uint32_t crc;  // over page and data_crc
};
static_assert(sizeof(JournalHeader) == 24 && sizeof(EntryHeader) == 16);

uint32_t header_crc(const JournalHeader& h) { return crc32c(&h, offsetof(JournalHeader, crc)); }
uint32_t entry_crc(const EntryHeader& e) { return crc32c(&e, offsetof(EntryHeader, crc)); }

Result<JournalHeader> read_header(int fd, const std::string& path) {
  JournalHeader h{};
  if (!pread_all(fd, &h, sizeof h, 0).is_ok() || h.magic != kMagic || h.version != kVersion || h.crc != header_crc(h))
    return Status(Errc::corrupt, "undo journal " + path + ": bad header");
  return h;
}
}  // namespace

Result<UndoJournal> UndoJournal::create(const std::string& path, uint64_t base_epoch, uint32_t page_size) {
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_RDWR | O_CREAT | O_TRUNC));
  JournalHeader h{kMagic, kVersion, base_epoch, page_size, 0};
  h.crc = header_crc(h);
  BNF_TRY(pwrite_all(fd.get(), &h, sizeof h, 0).context("undo journal " + path));
  if (::fdatasync(fd.get()) != 0) return errno_status("fdatasync " + path, errno);
  UndoJournal j(std::move(fd), page_size);
  j.offset_ = sizeof h;
  return j;
}

Status UndoJournal::append_all(std::span<const uint64_t> pages, const std::byte* image_base) {
  constexpr size_t kBatch = 512;  // two iovecs an entry, under IOV_MAX
  std::vector<EntryHeader> heads(std::min(pages.size(), kBatch));
  std::vector<iovec> iov(heads.size() * 2);
  for (size_t done = 0; done < pages.size(); done += kBatch) {
    const size_t n = std::min(kBatch, pages.size() - done);
    for (size_t i = 0; i < n; ++i) {
      const std::byte* old = image_base + pages[done + i] * page_size_;
      heads[i] = {pages[done + i], crc32c(old, page_size_), 0};
      heads[i].crc = entry_crc(heads[i]);
      iov[2 * i] = {&heads[i], sizeof(EntryHeader)};
      iov[2 * i + 1] = {const_cast<std::byte*>(old), page_size_};
    }
    const size_t want = n * (sizeof(EntryHeader) + page_size_);
    ssize_t w = ::pwritev(fd_.get(), iov.data(), static_cast<int>(2 * n), static_cast<off_t>(offset_));
    if (w < 0) return errno_status("undo journal write", errno);
    if (static_cast<size_t>(w) != want) return {Errc::no_space, "undo journal write: short write (disk full?)"};
    offset_ += want;
    entries_ += n;
  }
  return Status::ok();
}

Status UndoJournal::sync() {
  if (::fdatasync(fd_.get()) != 0) return errno_status("undo journal sync", errno);
  return Status::ok();
}

Result<uint64_t> UndoJournal::base_epoch(const std::string& path) {
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_RDONLY));
  BNF_ASSIGN_OR_RETURN(JournalHeader h, read_header(fd.get(), path));
  return h.base_epoch;
}

Result<uint64_t> UndoJournal::roll_back(const std::string& path, int image_fd, uint64_t image_pages) {
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_RDONLY));
  BNF_ASSIGN_OR_RETURN(JournalHeader h, read_header(fd.get(), path));
  BNF_ASSIGN_OR_RETURN(uint64_t len, file_size(fd.get()));
  std::vector<std::byte> page(h.page_size);
  uint64_t off = sizeof h;
  uint64_t restored = 0;
  while (off + sizeof(EntryHeader) + h.page_size <= len) {
    EntryHeader e{};
    BNF_TRY(pread_all(fd.get(), &e, sizeof e, off));
    BNF_TRY(pread_all(fd.get(), page.data(), page.size(), off + sizeof e));
    if (e.crc != entry_crc(e) || e.data_crc != crc32c(page.data(), page.size())) break;  // torn tail
    if (e.page >= image_pages) return Status(Errc::corrupt, "undo journal " + path + ": page past image end");
    BNF_TRY(pwrite_all(image_fd, page.data(), page.size(), e.page * h.page_size).context("roll back"));
    off += sizeof e + h.page_size;
    ++restored;
  }
  if (::fsync(image_fd) != 0) return errno_status("fsync image after roll back", errno);
  return restored;
}

}  // namespace bnf
