#include "common/files.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

namespace bnf {

Result<UniqueFd> open_file(const std::string& path, int flags, int mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return errno_status("open " + path, errno);
  return UniqueFd(fd);
}

Status fsync_dir(const std::string& dir) {
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(dir, O_RDONLY | O_DIRECTORY));
  if (::fsync(fd.get()) != 0) return errno_status("fsync " + dir, errno);
  return Status::ok();
}

Status pwrite_all(int fd, const void* buf, size_t len, uint64_t off) {
  const auto* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status("write", errno);
    }
    p += n;
    len -= static_cast<size_t>(n);
    off += static_cast<uint64_t>(n);
  }
  return Status::ok();
}

Status send_all(int fd, std::string_view bytes, std::string_view what) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status(what, errno);
    off += static_cast<size_t>(n);
  }
  return Status::ok();
}

Status pread_all(int fd, void* buf, size_t len, uint64_t off) {
  auto* p = static_cast<char*>(buf);
  while (len > 0) {
    ssize_t n = ::pread(fd, p, len, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status("read", errno);
    }
    if (n == 0) return {Errc::io, "read: unexpected end of file"};
    p += n;
    len -= static_cast<size_t>(n);
    off += static_cast<uint64_t>(n);
  }
  return Status::ok();
}

Status punch_hole(int fd, uint64_t off, uint64_t len) {
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off), static_cast<off_t>(len)) !=
      0)
    return errno_status("punch a hole", errno);
  return Status::ok();
}

Status write_file_atomic(const std::string& path, std::string_view data, int mode) {
  const std::string tmp = path + ".tmp";
  {
    BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode));
    if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0) return errno_status("set the mode of " + tmp, errno);
    BNF_TRY(pwrite_all(fd.get(), data.data(), data.size(), 0).context(tmp));
    if (::fsync(fd.get()) != 0) return errno_status("fsync " + tmp, errno);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_status("rename " + tmp, errno);
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return fsync_dir(dir.empty() ? "." : dir);
}

Result<std::string> read_file(const std::string& path) {
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_RDONLY));
  BNF_ASSIGN_OR_RETURN(uint64_t size, file_size(fd.get()));
  std::string out(size, '\0');
  BNF_TRY(pread_all(fd.get(), out.data(), out.size(), 0).context(path));
  return out;
}

Result<uint64_t> file_size(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_status("fstat", errno);
  return static_cast<uint64_t>(st.st_size);
}

Result<Mapping> map_file(int fd, uint64_t len, bool writable) {
  if (len == 0) return Mapping();
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* p = ::mmap(nullptr, len, prot, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return errno_status("mmap", errno);
  return Mapping(p, len);
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

Status make_dirs(const std::string& path, int mode) {
  std::filesystem::path at;
  for (const auto& part : std::filesystem::path(path)) {
    at /= part;
    if (::mkdir(at.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST)
      return errno_status("create directory " + at.string(), errno);
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) return {Errc::io, "create directory " + path + ": not a directory"};
  return Status::ok();
}

Status for_each_data_run(int fd, uint64_t from, uint64_t to, const std::function<void(uint64_t, uint64_t)>& fn) {
  for (uint64_t at = from; at < to;) {
    const off_t data = ::lseek(fd, static_cast<off_t>(at), SEEK_DATA);
    if (data < 0 && errno == ENXIO) return Status::ok();  // holes to the end of the file
    if (data < 0) return errno_status("find the data in a file (SEEK_DATA)", errno);
    if (static_cast<uint64_t>(data) >= to) return Status::ok();
    const off_t hole = ::lseek(fd, data, SEEK_HOLE);
    const uint64_t end = hole < 0 ? to : std::min<uint64_t>(to, static_cast<uint64_t>(hole));
    fn(static_cast<uint64_t>(data), end);
    at = end;
  }
  return Status::ok();
}

}  // namespace bnf
