// Pairs a direct trip's QEMU stream with its trip on the destination. The
// source daemon opens the stream connection itself, to the bnf port, sends one
// VM_STREAM frame naming a token, and hands the socket to its QEMU (`migrate
// fd:`), all while the handshake (VM_HELLO naming the same token) still runs:
// QEMU's first pass starts without waiting for it, and no port but bnf's own
// needs to be reachable. Until the trip claims the stream, the connection's
// worker reads it ahead (a stream left in the socket would stall the source
// QEMU within a millisecond at 1 Gbit/s); then it waits until the trip lets
// the socket go.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.hpp"

namespace bnf::qemu {

class StreamRendezvous {
 public:
  // What a worker reads ahead at most before the trip claims the stream, and
  // how many streams may be held at once (bounds the memory they take).
  static constexpr size_t kReadAheadMax = 32U << 20;
  static constexpr size_t kMaxHeld = 8;

  // The trip's hold on a stream socket; the stream's connection closes after it goes.
  class Claim {
   public:
    Claim(Claim&& o) noexcept
        : r_(o.r_), token_(std::move(o.token_)), fd_(o.fd_), read_ahead_(std::move(o.read_ahead_)) {
      o.r_ = nullptr;
    }
    Claim& operator=(Claim&&) = delete;
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;
    ~Claim();
    [[nodiscard]] int fd() const { return fd_; }
    // The stream's first bytes, read before the claim: they come before the socket's.
    std::vector<std::byte> take_read_ahead() { return std::move(read_ahead_); }

   private:
    friend class StreamRendezvous;
    Claim(StreamRendezvous* r, std::string token, int fd, std::vector<std::byte> ahead)
        : r_(r), token_(std::move(token)), fd_(fd), read_ahead_(std::move(ahead)) {}
    StreamRendezvous* r_;
    std::string token_;
    int fd_;
    std::vector<std::byte> read_ahead_;
  };

  // Stream side: offers socket `fd` from `peer` ("host:port") under `token`,
  // reads it ahead until a trip claims it, then waits until the trip lets it
  // go. Fails if nobody claimed it in `unclaimed_for`.
  Status serve(const std::string& token, const std::string& peer, int fd, std::chrono::milliseconds unclaimed_for);
  // Trip side: the socket offered under `token`, waiting up to `timeout` for it.
  // It must come from the host of `peer`, the trip's bnf connection.
  Result<Claim> claim(const std::string& token, const std::string& peer, std::chrono::milliseconds timeout);

 private:
  struct Offer {
    std::string peer_host;
    int fd = -1;
    int wake_fd = -1;  // eventfd: a claim came (the worker may be in poll)
    bool claimed = false;
    bool handed_over = false;  // the worker stopped reading ahead; read_ahead is the trip's
    bool released = false;
    std::vector<std::byte> read_ahead;
  };
  void release(const std::string& token);

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Offer> offers_;
};

}  // namespace bnf::qemu
