#include "vm/destination/stream_rendezvous.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "common/unique_fd.hpp"

namespace bnf::qemu {

namespace {

using Clock = std::chrono::steady_clock;

// Host part of "host:port" (IPv6 hosts come without brackets from peer names).
std::string host_of(const std::string& host_port) {
  const auto colon = host_port.rfind(':');
  return colon == std::string::npos ? host_port : host_port.substr(0, colon);
}

// Reads what `fd` has (up to the read-ahead cap) into `ahead`, waiting until
// `deadline` or a wake-up on `wake_fd`. False once the stream ended or failed:
// the trip's own reads will say how.
bool read_ahead_once(int fd, int wake_fd, std::vector<std::byte>& ahead, Clock::time_point deadline) {
  const bool room = ahead.size() < StreamRendezvous::kReadAheadMax;
  pollfd p[2] = {{fd, static_cast<short>(room ? POLLIN : 0), 0}, {wake_fd, POLLIN, 0}};
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (::poll(p, 2, static_cast<int>(std::max<int64_t>(left, 0) + 1)) <= 0 || (p[0].revents == 0)) return true;
  const size_t want = std::min<size_t>(256U << 10, StreamRendezvous::kReadAheadMax - ahead.size());
  const size_t at = ahead.size();
  ahead.resize(at + want);
  const ssize_t n = ::read(fd, ahead.data() + at, want);
  ahead.resize(at + static_cast<size_t>(std::max<ssize_t>(n, 0)));
  return n > 0 || (n < 0 && (errno == EINTR || errno == EAGAIN));
}

}  // namespace

StreamRendezvous::Claim::~Claim() {
  if (r_ != nullptr) r_->release(token_);
}

Status StreamRendezvous::serve(const std::string& token, const std::string& peer, int fd,
                               std::chrono::milliseconds unclaimed_for) {
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return errno_status("eventfd", errno);
  std::unique_lock lk(mu_);
  if (offers_.size() >= kMaxHeld)
    return Status(Errc::busy, fmt::format("{} QEMU streams are held here already", kMaxHeld));
  auto bad_token = [] { return Status(Errc::protocol, "VM_STREAM names a token already in use or none"); };
  if (token.empty()) return bad_token();
  auto [slot, added] = offers_.try_emplace(token, Offer{host_of(peer), fd, wake.get()});
  if (!added) return bad_token();
  Offer& o = slot->second;
  cv_.notify_all();
  const auto deadline = Clock::now() + unclaimed_for;
  std::vector<std::byte> ahead;
  bool readable = true;
  while (!o.claimed) {
    if (Clock::now() >= deadline) {
      offers_.erase(token);
      return Status(Errc::unreachable, "no migration claimed this QEMU stream (its handshake never came)");
    }
    lk.unlock();
    if (readable) {
      readable = read_ahead_once(fd, wake.get(), ahead, deadline);
    } else {
      pollfd p{wake.get(), POLLIN, 0};
      (void)::poll(&p, 1, 10);
    }
    lk.lock();
  }
  o.read_ahead = std::move(ahead);
  o.handed_over = true;
  cv_.notify_all();
  cv_.wait(lk, [&] { return o.released; });
  offers_.erase(token);
  return Status::ok();
}

Result<StreamRendezvous::Claim> StreamRendezvous::claim(const std::string& token, const std::string& peer,
                                                        std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  auto offered = [&] {
    auto it = offers_.find(token);
    return it != offers_.end() && !it->second.claimed;
  };
  if (!cv_.wait_for(lk, timeout, offered))
    return Status(Errc::unreachable, "the source QEMU's stream did not arrive in time");
  Offer& o = offers_[token];
  if (o.peer_host != host_of(peer))
    return Status(Errc::protocol,
                  "the QEMU stream for this migration came from " + o.peer_host + ", not from " + host_of(peer));
  o.claimed = true;
  const uint64_t one = 1;
  (void)::write(o.wake_fd, &one, sizeof one);
  cv_.wait(lk, [&] { return o.handed_over; });
  return Claim(this, token, o.fd, std::move(o.read_ahead));
}

void StreamRendezvous::release(const std::string& token) {
  std::lock_guard lk(mu_);
  auto it = offers_.find(token);
  if (it != offers_.end()) it->second.released = true;
  cv_.notify_all();
}

}  // namespace bnf::qemu
