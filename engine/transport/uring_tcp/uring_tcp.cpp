#include "transport/uring_tcp/uring_tcp.hpp"

#include <fmt/format.h>
#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "common/choice.hpp"
#include "transport/tcp/socket_util.hpp"

#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

namespace bnf::transport {

namespace {

constexpr unsigned kRingDepth = 64;
constexpr size_t kStagingBytes = 256U << 10;  // copied (unregistered) bytes per batch
constexpr size_t kMaxIov = 512;
constexpr uint64_t kRecvTag = 100;
constexpr uint64_t kRecvTimeoutTag = 101;  // the receive's linked timeout: its completion says nothing new

// The zero-copy modes by name: the one list parse_zero_copy reads and its error names.
constexpr std::array<Choice<UringTcpOptions::ZeroCopy>, 3> kZeroCopyNames = {{
    {"auto", UringTcpOptions::ZeroCopy::automatic},
    {"on", UringTcpOptions::ZeroCopy::on},
    {"off", UringTcpOptions::ZeroCopy::off},
}};

__kernel_timespec timespec_of(std::chrono::milliseconds d) {
  return {static_cast<int64_t>(d.count() / 1000), static_cast<long long>((d.count() % 1000) * 1000000)};
}

// One batch of gathered parts, submitted as a single sendmsg. Two batches
// alternate so the next one fills while the previous is in the kernel.
struct SendBatch {
  std::vector<iovec> iov;
  std::unique_ptr<std::byte[]> staging = std::make_unique<std::byte[]>(kStagingBytes);
  size_t staged = 0;
  size_t bytes = 0;
  size_t zc_bytes = 0;
  size_t done = 0;  // bytes the kernel confirmed
  bool result_pending = false;
  int notifs_pending = 0;  // zero-copy notifications still owed
  msghdr msg{};
  [[nodiscard]] bool busy() const { return result_pending || notifs_pending > 0; }
  void reset() {
    iov.clear();
    staged = bytes = zc_bytes = done = 0;
  }
};

class UringTcpConnection final : public Connection {
 public:
  UringTcpConnection(UniqueFd fd, UringTcpOptions opts) : fd_(std::move(fd)), opts_(opts) {
    peer_ = peer_name(fd_.get());
    using ZC = UringTcpOptions::ZeroCopy;
    use_zc_ = opts_.zero_copy == ZC::on || (opts_.zero_copy == ZC::automatic && !peer_is_loopback(fd_.get()));
  }
  ~UringTcpConnection() override {
    if (!ring_ok_) return;
    try {
      (void)drain_all();  // the kernel may still read sends' buffers
    } catch (...) {
      // A failure's message could not be made: the ring goes all the same.
    }
    io_uring_queue_exit(&ring_);
  }

  Status init() {
    int rc = io_uring_queue_init(kRingDepth, &ring_, 0);
    if (rc < 0) return errno_status("io_uring_queue_init", -rc);
    ring_ok_ = true;
    return Status::ok();
  }

  Result<RegionHandle> register_region(std::span<const std::byte> region) override { return regions_->add(region); }

  Status post(std::span<const ConstBuffer> parts) override {
    if (failed_) return failure_;
    for (const ConstBuffer& p : parts) {
      if (p.size == 0) continue;
      SendBatch& b = batches_[cur_];
      if (is_registered(p)) {
        b.iov.push_back({const_cast<std::byte*>(p.data), p.size});
        b.zc_bytes += p.size;
      } else {
        if (p.size > kStagingBytes) {  // large unregistered part: copy it in staging-sized pieces
          for (size_t off = 0; off < p.size; off += kStagingBytes) {
            const ConstBuffer piece{p.data + off, std::min(kStagingBytes, p.size - off)};
            BNF_TRY(post(std::span<const ConstBuffer>(&piece, 1)));
          }
          continue;
        }
        if (b.staged + p.size > kStagingBytes) {
          BNF_TRY(submit_current());
          BNF_TRY(post(std::span<const ConstBuffer>(&p, 1)));
          continue;
        }
        std::byte* dst = b.staging.get() + b.staged;
        std::memcpy(dst, p.data, p.size);
        b.staged += p.size;
        // Merge with the previous iovec when it is the adjacent staging bytes.
        if (!b.iov.empty() && static_cast<std::byte*>(b.iov.back().iov_base) + b.iov.back().iov_len == dst)
          b.iov.back().iov_len += p.size;
        else
          b.iov.push_back({dst, p.size});
      }
      b.bytes += p.size;
      if (b.bytes >= opts_.batch_bytes || b.iov.size() >= kMaxIov) BNF_TRY(submit_current());
    }
    return Status::ok();
  }

  Status flush() override {
    if (failed_) return failure_;
    BNF_TRY(submit_current());
    return drain_all();
  }

  Status recv(std::span<std::byte> dst) override {
    MutableBuffer one{dst.data(), dst.size()};
    return recv_scatter(std::span<const MutableBuffer>(&one, 1));
  }

  Status recv_scatter(std::span<const MutableBuffer> parts) override {
    if (failed_) return recv_after_failure(parts);
    std::vector<iovec> iov;
    iov.reserve(parts.size());
    size_t want = 0;
    for (const MutableBuffer& p : parts) {
      if (p.size == 0) continue;
      iov.push_back({p.data, p.size});
      want += p.size;
    }
    size_t idx = 0;
    while (want > 0) {
      // Receive in slices of at most IOV_MAX entries.
      const size_t n = std::min<size_t>(iov.size() - idx, 1024);
      msghdr msg{};
      msg.msg_iov = iov.data() + idx;
      msg.msg_iovlen = n;
      const std::optional<std::chrono::milliseconds> wait = next_receive_wait(limits_);
      const __kernel_timespec ts = timespec_of(wait.value_or(std::chrono::milliseconds(0)));
      BNF_TRY(prep_recv(msg, wait ? &ts : nullptr));
      BNF_ASSIGN_OR_RETURN(int res, submit_and_wait_for_recv());
      if (wait && (res == -ECANCELED || res == -ETIME)) {  // no byte within the wait
        BNF_TRY(fail_unless_ok(after_quiet_wait(limits_, peer_)));
        continue;
      }
      if (res == 0) return fail({Errc::connection_lost, "connection to " + peer_ + " lost: the peer closed it"});
      if (res < 0) return fail(broken("receiving", -res));
      stats_.bytes_received += static_cast<uint64_t>(res);
      size_t got = static_cast<size_t>(res);
      want -= got;
      // Advance over what arrived (a short read can stop mid-iovec).
      while (got > 0 && idx < iov.size()) {
        if (got >= iov[idx].iov_len) {
          got -= iov[idx].iov_len;
          ++idx;
        } else {
          iov[idx].iov_base = static_cast<char*>(iov[idx].iov_base) + got;
          iov[idx].iov_len -= got;
          got = 0;
        }
      }
    }
    return Status::ok();
  }

  void limit_receives(ReceiveLimits limits) override { limits_ = std::move(limits); }

  void shutdown() noexcept override { ::shutdown(fd_.get(), SHUT_RDWR); }
  [[nodiscard]] int socket_fd() const noexcept override { return fd_.get(); }
  [[nodiscard]] ConnectionStats stats() const override { return stats_; }
  [[nodiscard]] std::string peer() const override { return peer_; }

 private:
  bool is_registered(const ConstBuffer& p) const { return regions_->contains(p.data, p.size); }

  // A send or receive on an established connection failed: say it broke, and how.
  [[nodiscard]] Status broken(const char* doing, int err) const {
    if (err == EPIPE) {  // the socket is closed; its pending error says why (reset, timeout)
      int so_err = 0;
      socklen_t len = sizeof so_err;
      if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &so_err, &len) == 0 && so_err != 0) err = so_err;
    }
    const bool lost = err == EPIPE || err == ECONNRESET || err == ECONNABORTED || err == ETIMEDOUT ||
                      err == EHOSTUNREACH || err == ENETUNREACH;
    if (!lost) return errno_status(std::string(doing) + " to/from " + peer_, err);
    return {Errc::connection_lost, fmt::format("connection to {} lost while {}: {}{}", peer_, doing, errno_text(err),
                                               err == ETIMEDOUT ? " (no answer within the peer timeout)" : "")};
  }
  Status fail(Status s) {
    failed_ = true;
    failure_ = s;
    return s;
  }
  Status fail_unless_ok(Status s) { return s.is_ok() ? s : fail(std::move(s)); }

  // Queues one receive into `msg`; with `timeout`, linked to a timeout that
  // cancels it (a partial receive then completes with what it got). Both SQEs
  // go in one submission: a link split across two would lose its timeout.
  Status prep_recv(msghdr& msg, const __kernel_timespec* timeout) {
    if (io_uring_sq_space_left(&ring_) < 2) BNF_TRY(submit());
    BNF_ASSIGN_OR_RETURN(io_uring_sqe * sqe, get_sqe());
    io_uring_prep_recvmsg(sqe, fd_.get(), &msg, MSG_WAITALL);
    io_uring_sqe_set_data64(sqe, kRecvTag);
    if (timeout == nullptr) return Status::ok();
    sqe->flags |= IOSQE_IO_LINK;
    BNF_ASSIGN_OR_RETURN(io_uring_sqe * t, get_sqe());
    io_uring_prep_link_timeout(t, const_cast<__kernel_timespec*>(timeout), 0);
    io_uring_sqe_set_data64(t, kRecvTimeoutTag);
    return Status::ok();
  }

  // Hands the queued SQEs to the kernel. One it refused is never in flight,
  // so waiting for its completion would wait for ever: the connection fails.
  Status submit() {
    while (true) {
      const int rc = io_uring_submit(&ring_);
      if (rc >= 0) return Status::ok();
      if (rc != -EINTR) return fail(errno_status("io_uring_submit", -rc));
    }
  }

  Result<io_uring_sqe*> get_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
      BNF_TRY(submit());
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  // Submits the filling batch and switches to the other one, waiting for it to
  // be free first: at most two batches are ever in the kernel (back-pressure).
  Status submit_current() {
    SendBatch& b = batches_[cur_];
    if (b.bytes == 0) return Status::ok();
    // One send in the kernel at a time: a second sendmsg on the socket could
    // overtake the first one's unsent rest and interleave the byte stream.
    while (batches_[cur_ ^ 1].result_pending) BNF_TRY(reap_one());
    BNF_TRY(issue(cur_));
    cur_ ^= 1;
    while (batches_[cur_].busy()) BNF_TRY(reap_one());
    batches_[cur_].reset();
    return Status::ok();
  }

  Status issue(int idx) {
    SendBatch& b = batches_[idx];
    b.msg = {};
    b.msg.msg_iov = b.iov.data();
    b.msg.msg_iovlen = b.iov.size();
    BNF_ASSIGN_OR_RETURN(io_uring_sqe * sqe, get_sqe());
    const bool zc = use_zc_ && b.zc_bytes >= opts_.zero_copy_min_bytes;
    if (zc) {
      io_uring_prep_sendmsg_zc(sqe, fd_.get(), &b.msg, MSG_WAITALL | MSG_NOSIGNAL);
      if (report_usage_) sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
      stats_.zc_bytes += b.bytes - b.done;
    } else {
      io_uring_prep_sendmsg(sqe, fd_.get(), &b.msg, MSG_WAITALL | MSG_NOSIGNAL);
    }
    io_uring_sqe_set_data64(sqe, static_cast<uint64_t>(idx));
    ++stats_.send_ops;
    BNF_TRY(submit());
    b.result_pending = true;  // only once the kernel has it: a failed submit leaves nothing to reap
    return Status::ok();
  }

  Status on_send_cqe(int idx, int res, unsigned flags) {
    SendBatch& b = batches_[idx];
    if ((flags & IORING_CQE_F_NOTIF) != 0) {
      --b.notifs_pending;
      ++stats_.zc_notifications;
      if ((static_cast<unsigned>(res) & IORING_NOTIF_USAGE_ZC_COPIED) != 0) ++stats_.zc_copied;
      return Status::ok();
    }
    b.result_pending = false;
    if ((flags & IORING_CQE_F_MORE) != 0) ++b.notifs_pending;
    if (res == -EINVAL && report_usage_) {
      report_usage_ = false;  // older kernel: retry without usage reports
      return issue(idx);
    }
    if (res == -EINVAL || res == -EOPNOTSUPP) {
      if (use_zc_) {
        use_zc_ = false;  // no SEND_ZC here: plain sends from now on
        return issue(idx);
      }
    }
    if (res < 0) return fail(broken("sending", -res));
    stats_.bytes_sent += static_cast<uint64_t>(res);
    b.done += static_cast<size_t>(res);
    if (b.done < b.bytes) {
      advance(b, static_cast<size_t>(res));
      return issue(idx);
    }
    return Status::ok();
  }

  static void advance(SendBatch& b, size_t n) {
    size_t i = 0;
    while (n > 0 && i < b.iov.size()) {
      if (n >= b.iov[i].iov_len) {
        n -= b.iov[i].iov_len;
        ++i;
      } else {
        b.iov[i].iov_base = static_cast<char*>(b.iov[i].iov_base) + n;
        b.iov[i].iov_len -= n;
        n = 0;
      }
    }
    b.iov.erase(b.iov.begin(), b.iov.begin() + static_cast<long>(i));
  }

  // The ring is given up once a send failed, but what the peer sent before it
  // went away (an ERROR frame saying why) may still sit in the socket: read it
  // directly, never waiting long.
  Status recv_after_failure(std::span<const MutableBuffer> parts) {
    for (const MutableBuffer& p : parts) {
      size_t got = 0;
      while (got < p.size) {
        pollfd pfd{fd_.get(), POLLIN, 0};
        if (::poll(&pfd, 1, 2000) <= 0) return failure_;
        const ssize_t n = ::recv(fd_.get(), p.data + got, p.size - got, MSG_DONTWAIT);
        if (n <= 0) return failure_;
        got += static_cast<size_t>(n);
        stats_.bytes_received += static_cast<uint64_t>(n);
      }
    }
    return Status::ok();
  }

  // Waits for one completion and dispatches it; records receive results.
  Status reap_one() {
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_wait_cqe(&ring_, &cqe);
    if (rc == -EINTR) return Status::ok();
    if (rc < 0) return fail(errno_status("io_uring_wait_cqe", -rc));
    const uint64_t tag = io_uring_cqe_get_data64(cqe);
    const int res = cqe->res;
    const unsigned flags = cqe->flags;
    io_uring_cqe_seen(&ring_, cqe);
    if (tag == kRecvTimeoutTag) return Status::ok();
    if (tag == kRecvTag) {
      recv_result_ = res;
      recv_done_ = true;
      return Status::ok();
    }
    return on_send_cqe(static_cast<int>(tag), res, flags);
  }

  // Submits the queued receive and reaps completions (sends included) until it is done.
  Result<int> submit_and_wait_for_recv() {
    recv_done_ = false;
    BNF_TRY(submit());
    while (!recv_done_) BNF_TRY(reap_one());
    return recv_result_;
  }

  Status drain_all() {
    while (batches_[0].busy() || batches_[1].busy()) BNF_TRY(reap_one());
    batches_[0].reset();
    batches_[1].reset();
    return failed_ ? failure_ : Status::ok();
  }

  UniqueFd fd_;
  UringTcpOptions opts_;
  std::string peer_;
  io_uring ring_{};
  bool ring_ok_ = false;
  std::array<SendBatch, 2> batches_;
  int cur_ = 0;
  bool use_zc_ = true;
  bool report_usage_ = true;
  // The handles register_region returned point here weakly: a handle let go
  // takes its region out, one outliving the connection finds the table gone.
  std::shared_ptr<RegionTable> regions_ = std::make_shared<RegionTable>();
  ConnectionStats stats_;
  ReceiveLimits limits_;
  bool recv_done_ = false;
  int recv_result_ = 0;
  bool failed_ = false;
  Status failure_;
};

class UringTcpListener final : public Listener {
 public:
  UringTcpListener(UniqueFd fd, Endpoint local, UringTcpOptions opts)
      : fd_(std::move(fd)), local_(std::move(local)), opts_(opts) {}

  Result<std::unique_ptr<Connection>> accept() override {
    int fd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINVAL || errno == EBADF) return Status(Errc::cancelled, "listener shut down");
      return errno_status("accept", errno);
    }
    tune_socket(fd, opts_.peer_timeout_ms);
    return make_connection(UniqueFd(fd), opts_);
  }
  void shutdown() noexcept override { ::shutdown(fd_.get(), SHUT_RDWR); }
  [[nodiscard]] Endpoint local() const override { return local_; }

  static Result<std::unique_ptr<Connection>> make_connection(UniqueFd fd, UringTcpOptions opts) {
    auto c = std::make_unique<UringTcpConnection>(std::move(fd), opts);
    BNF_TRY(c->init());
    return std::unique_ptr<Connection>(std::move(c));
  }

 private:
  UniqueFd fd_;
  Endpoint local_;
  UringTcpOptions opts_;
};

class UringTcpTransport final : public Transport {
 public:
  explicit UringTcpTransport(UringTcpOptions opts) : opts_(opts) {}
  [[nodiscard]] std::string name() const override { return "uring-tcp"; }
  [[nodiscard]] Capabilities capabilities() const noexcept override { return {.pollable = true}; }

  Result<std::unique_ptr<Connection>> connect(const Endpoint& ep) override {
    BNF_ASSIGN_OR_RETURN(UniqueFd fd, tcp_connect(ep, opts_.connect_timeout_ms, opts_.peer_timeout_ms));
    auto c = std::make_unique<UringTcpConnection>(std::move(fd), opts_);
    BNF_TRY(c->init());
    return std::unique_ptr<Connection>(std::move(c));
  }

  Result<std::unique_ptr<Listener>> listen(const Endpoint& ep) override {
    uint16_t port = 0;
    BNF_ASSIGN_OR_RETURN(UniqueFd fd, tcp_listen(ep, &port));
    Endpoint local = ep;
    local.port = port;
    return std::unique_ptr<Listener>(std::make_unique<UringTcpListener>(std::move(fd), local, opts_));
  }

 private:
  UringTcpOptions opts_;
};

}  // namespace

std::unique_ptr<Transport> make_uring_tcp_transport(UringTcpOptions opts) {
  return std::make_unique<UringTcpTransport>(opts);
}

Result<UringTcpOptions::ZeroCopy> parse_zero_copy(std::string_view s) {
  return parse_choice(kZeroCopyNames, "--zero-copy", s);
}

}  // namespace bnf::transport
