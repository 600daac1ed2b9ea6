#include "stream/stream_io.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/wait_readable.hpp"

namespace bnf::qemu {

FdSource::FdSource(int fd, std::vector<std::byte> first) : fd_(fd), buf_(std::move(first)) {
  end_ = buf_.size();
  buf_.resize(std::max<size_t>(end_, 1U << 20));
}

Status FdSource::fill() {
  if (eof_) return Status::ok();
  if (pos_ > 0 && pos_ == end_) pos_ = end_ = 0;
  if (end_ == buf_.size()) {  // compact
    std::memmove(buf_.data(), buf_.data() + pos_, end_ - pos_);
    end_ -= pos_;
    pos_ = 0;
  }
  while (true) {
    BNF_TRY(wait_for_input());
    ssize_t n = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))  // SO_RCVTIMEO: the sender went silent
      return Status(Errc::connection_lost, "migration stream: nothing received within the peer timeout");
    if (n < 0) return errno_status("read migration stream", errno);
    if (n == 0) eof_ = true;
    end_ += static_cast<size_t>(n);
    return Status::ok();
  }
}

Status FdSource::wait_for_input() {
  while (watch_fd_ >= 0) {
    if (watch_pending_ && watch_pending_()) {
      BNF_TRY(on_watch_());
      continue;
    }
    BNF_ASSIGN_OR_RETURN(Readable r, wait_readable(fd_, watch_fd_));
    if (r.second) BNF_TRY(on_watch_());
    if (r.first) return Status::ok();
  }
  return Status::ok();
}

Status FdSource::read(std::span<std::byte> dst, const char* what) {
  size_t got = 0;
  while (got < dst.size()) {
    if (pos_ == end_) {
      BNF_TRY(fill());
      if (pos_ == end_) return {Errc::protocol, std::string("migration stream ended inside ") + what};
    }
    const size_t n = std::min(dst.size() - got, end_ - pos_);
    std::memcpy(dst.data() + got, buf_.data() + pos_, n);
    pos_ += n;
    got += n;
  }
  consumed_ += dst.size();
  return Status::ok();
}

Result<const std::byte*> FdSource::view(size_t n, const char* what) {
  if (n > buf_.size()) return Status(Errc::internal, "stream view larger than the buffer");
  while (end_ - pos_ < n) {
    if (buf_.size() - pos_ < n) {  // make room behind what is left
      std::memmove(buf_.data(), buf_.data() + pos_, end_ - pos_);
      end_ -= pos_;
      pos_ = 0;
    }
    BNF_TRY(fill());
    if (eof_ && end_ - pos_ < n) return Status(Errc::protocol, std::string("migration stream ended inside ") + what);
  }
  const std::byte* p = buf_.data() + pos_;
  pos_ += n;
  consumed_ += n;
  return p;
}

Result<bool> FdSource::peek(uint8_t& out) {
  if (pos_ == end_) {
    BNF_TRY(fill());
    if (pos_ == end_) return false;
  }
  out = static_cast<uint8_t>(buf_[pos_]);
  return true;
}

Status FdSink::write(std::span<const std::byte> src) {
  if (buf_.size() + src.size() > buf_.capacity()) BNF_TRY(flush());
  if (src.size() >= buf_.capacity()) {
    buf_.assign(src.begin(), src.end());
    return flush();
  }
  buf_.insert(buf_.end(), src.begin(), src.end());
  return Status::ok();
}

Status FdSink::flush() {
  size_t off = 0;
  while (off < buf_.size()) {
    ssize_t n = ::write(fd_, buf_.data() + off, buf_.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("write migration stream", errno);
    off += static_cast<size_t>(n);
  }
  written_ += buf_.size();
  buf_.clear();
  return Status::ok();
}

}  // namespace bnf::qemu
