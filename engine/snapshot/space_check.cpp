#include "snapshot/space_check.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <charconv>
#include <fstream>
#include <sstream>

#include "common/size.hpp"

namespace bnf {

namespace {

// MemAvailable from /proc/meminfo, in bytes; 0 if it cannot be read (then not checked).
uint64_t memory_available() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    constexpr std::string_view kKey = "MemAvailable:";
    if (!line.starts_with(kKey)) continue;
    const size_t at = line.find_first_not_of(' ', kKey.size());
    uint64_t kib = 0;
    if (at == std::string::npos) return 0;
    const auto [end, err] = std::from_chars(line.data() + at, line.data() + line.size(), kib);
    return err == std::errc() ? kib << 10 : 0;
  }
  return 0;
}

uint64_t allocated_bytes(const std::string& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

}  // namespace

Status check_image_size(uint64_t size_bytes) {
  if (size_bytes > kMaxImageBytes)
    return {Errc::invalid_argument, fmt::format("an image of {} is over the maximum of {}", format_size(size_bytes),
                                                format_size(kMaxImageBytes))};
  return Status::ok();
}

Status check_room_for_image(uint64_t size_bytes, uint64_t page_size, const SpaceAtHand& at_hand) {
  BNF_TRY(check_image_size(size_bytes));
  const uint64_t table_bytes = size_bytes / page_size * kDigestBytesPerPage;
  const uint64_t need = size_bytes + table_bytes;
  if (need > at_hand.free_bytes + at_hand.base_bytes) {
    const std::string held = at_hand.base_bytes == 0 ? ""
                                                     : fmt::format(" (and {} held by the snapshot it replaces)",
                                                                   format_size(at_hand.base_bytes));
    return {Errc::no_space, fmt::format("not enough space for a {} image: {} free in {}{}", format_size(size_bytes),
                                        format_size(at_hand.free_bytes), at_hand.where, held)};
  }
  if (at_hand.memory_available != 0 && table_bytes > at_hand.memory_available)
    return {Errc::no_space,
            fmt::format("not enough memory for the digest table of a {} image: it needs {}, {} available",
                        format_size(size_bytes), format_size(table_bytes), format_size(at_hand.memory_available))};
  return Status::ok();
}

Result<SpaceAtHand> space_at_hand(const std::string& dir, const std::string& base_image) {
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) != 0) return errno_status("statvfs " + dir, errno);
  SpaceAtHand at;
  at.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  at.base_bytes = allocated_bytes(base_image);
  at.memory_available = memory_available();
  at.where = dir;
  return at;
}

}  // namespace bnf
