// Buffered byte source and sink over file descriptors, for QEMU's migration
// stream (a pipe or a socket: reads may be short, EOF ends the stream).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/status.hpp"

namespace bnf::qemu {

class FdSource {
 public:
  explicit FdSource(int fd) : FdSource(fd, {}) {}
  // `first`: the stream's first bytes, already read from `fd`.
  FdSource(int fd, std::vector<std::byte> first);
  // Exactly dst.size() bytes; a premature EOF is an error naming `what`.
  Status read(std::span<std::byte> dst, const char* what);
  // The next `n` bytes in place (no copy), consumed; valid until the next call.
  Result<const std::byte*> view(size_t n, const char* what);
  // Next byte without consuming it; std::nullopt-like: returns false at EOF.
  Result<bool> peek(uint8_t& out);
  // Everything up to EOF, in chunks, to `fn`.
  template <typename Fn>
  Status drain(Fn&& fn);
  [[nodiscard]] uint64_t consumed() const { return consumed_; }
  // While it waits for the stream, `fd` turning readable (or `pending`
  // saying input is already buffered behind it) calls `on_readable` (a
  // relayed trip's return path comes back that way); its failure ends the read.
  void also_watch(int fd, std::function<Status()> on_readable, std::function<bool()> pending = nullptr) {
    watch_fd_ = fd;
    on_watch_ = std::move(on_readable);
    watch_pending_ = std::move(pending);
  }

 private:
  Status fill();
  Status wait_for_input();
  int fd_;
  int watch_fd_ = -1;
  std::function<Status()> on_watch_;
  std::function<bool()> watch_pending_;
  std::vector<std::byte> buf_;
  size_t pos_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
  uint64_t consumed_ = 0;
};

// Where a rewritten stream goes: a file or socket, or frames to a peer.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual Status write(std::span<const std::byte> src) = 0;
  virtual Status flush() = 0;
  // Called once, before the first byte of device state is written.
  virtual Status before_device_state() { return Status::ok(); }
};

class FdSink final : public ByteSink {
 public:
  explicit FdSink(int fd) : fd_(fd) { buf_.reserve(1U << 20); }
  Status write(std::span<const std::byte> src) override;
  Status flush() override;
  [[nodiscard]] uint64_t written() const { return written_; }

 private:
  int fd_;
  std::vector<std::byte> buf_;
  uint64_t written_ = 0;
};

template <typename Fn>
Status FdSource::drain(Fn&& fn) {
  while (true) {
    if (pos_ == end_) {
      BNF_TRY(fill());
      if (pos_ == end_) return Status::ok();
    }
    BNF_TRY(fn(std::span<const std::byte>(buf_.data() + pos_, end_ - pos_)));
    consumed_ += end_ - pos_;
    pos_ = end_;
  }
}

}  // namespace bnf::qemu
