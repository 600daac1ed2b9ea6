#include "transport/mem/mem_transport.hpp"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace bnf::transport {

namespace {

// One direction of a connection: a bounded byte queue (back-pressure at 4 MiB).
class Pipe {
 public:
  static constexpr size_t kCapacity = 4U << 20;

  Status write(const std::byte* p, size_t n) {
    std::unique_lock lk(mu_);
    while (n > 0) {
      // A writer that shut its side down (finish) sends no more, as with TCP.
      cv_.wait(lk, [&] { return closed_ || eof_ || buf_.size() < kCapacity; });
      if (closed_) return {Errc::io, "connection closed"};
      if (eof_) return {Errc::io, "connection shut down"};
      const size_t k = std::min(n, kCapacity - buf_.size());
      buf_.insert(buf_.end(), p, p + k);
      p += k;
      n -= k;
      cv_.notify_all();
    }
    return Status::ok();
  }

  // Bounded by `limits` like a socket's receive; `peer` names the other end.
  Status read(std::byte* p, size_t n, const ReceiveLimits& limits, const std::string& peer) {
    std::unique_lock lk(mu_);
    while (n > 0) {
      auto ready = [&] { return !buf_.empty() || closed_ || eof_; };
      if (const auto wait = next_receive_wait(limits)) {
        if (!cv_.wait_for(lk, *wait, ready)) {
          lk.unlock();  // still_active may take other locks
          BNF_TRY(after_quiet_wait(limits, peer));
          lk.lock();
          continue;
        }
      } else {
        cv_.wait(lk, ready);
      }
      if (buf_.empty()) return {Errc::io, "connection closed by peer"};
      const size_t k = std::min(n, buf_.size());
      std::copy(buf_.begin(), buf_.begin() + static_cast<long>(k), p);
      buf_.erase(buf_.begin(), buf_.begin() + static_cast<long>(k));
      p += k;
      n -= k;
      cv_.notify_all();
    }
    return Status::ok();
  }

  void close() {  // no more data either way
    std::lock_guard lk(mu_);
    closed_ = true;
    buf_.clear();
    cv_.notify_all();
  }
  void finish() {  // writer is gone: readers drain then see EOF
    std::lock_guard lk(mu_);
    eof_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::byte> buf_;
  bool closed_ = false;
  bool eof_ = false;
};

class MemConnection final : public Connection {
 public:
  MemConnection(std::shared_ptr<Pipe> out, std::shared_ptr<Pipe> in, FaultPlan faults, std::string peer)
      : out_(std::move(out)), in_(std::move(in)), faults_(faults), peer_(std::move(peer)) {}
  ~MemConnection() override {
    out_->finish();
    in_->close();
  }

  // Every byte is copied into the pipe: a registration only names the region.
  Result<RegionHandle> register_region(std::span<const std::byte> region) override { return regions_->add(region); }

  Status post(std::span<const ConstBuffer> parts) override {
    if (faults_.delay_us_per_post != 0)
      std::this_thread::sleep_for(std::chrono::microseconds(faults_.delay_us_per_post));
    for (const ConstBuffer& p : parts)
      if (p.size != 0) BNF_TRY(send_with_faults(p.data, p.size));
    return Status::ok();
  }
  Status flush() override { return Status::ok(); }

  Status recv(std::span<std::byte> dst) override {
    BNF_TRY(in_->read(dst.data(), dst.size(), limits_, peer_));
    stats_.bytes_received += dst.size();
    return Status::ok();
  }
  Status recv_scatter(std::span<const MutableBuffer> parts) override {
    for (const MutableBuffer& p : parts) BNF_TRY(recv({p.data, p.size}));
    return Status::ok();
  }
  void limit_receives(ReceiveLimits limits) override { limits_ = std::move(limits); }
  void shutdown() noexcept override {  // like TCP: what was sent still arrives, then EOF
    out_->finish();
    in_->close();
  }
  [[nodiscard]] ConnectionStats stats() const override { return stats_; }
  [[nodiscard]] std::string peer() const override { return peer_; }

 private:
  Status send_with_faults(const std::byte* p, size_t n) {
    std::vector<std::byte> copy(p, p + n);
    const uint64_t start = stats_.bytes_sent;
    if (faults_.corrupt_at_byte && *faults_.corrupt_at_byte >= start && *faults_.corrupt_at_byte < start + n)
      copy[*faults_.corrupt_at_byte - start] ^= std::byte{0x5a};
    size_t len = n;
    if (faults_.cut_after_bytes && start + n > *faults_.cut_after_bytes) {
      len = *faults_.cut_after_bytes > start ? static_cast<size_t>(*faults_.cut_after_bytes - start) : 0;
      (void)out_->write(copy.data(), len);
      shutdown();
      return {Errc::io, "connection cut (injected fault)"};
    }
    stats_.bytes_sent += n;
    if (faults_.drop_from_byte) {
      const uint64_t d0 = *faults_.drop_from_byte;
      const uint64_t d1 = d0 + faults_.drop_bytes;
      std::vector<std::byte> kept;
      for (size_t i = 0; i < n; ++i)
        if (start + i < d0 || start + i >= d1) kept.push_back(copy[i]);
      return out_->write(kept.data(), kept.size());
    }
    return out_->write(copy.data(), len);
  }

  std::shared_ptr<Pipe> out_;
  std::shared_ptr<Pipe> in_;
  FaultPlan faults_;
  std::string peer_;
  ConnectionStats stats_;
  ReceiveLimits limits_;
  std::shared_ptr<RegionTable> regions_ = std::make_shared<RegionTable>();
};

}  // namespace

struct MemNetwork::State {
  struct PendingConn {
    std::shared_ptr<Pipe> to_server;
    std::shared_ptr<Pipe> to_client;
  };
  struct Port {
    std::deque<PendingConn> backlog;
    bool closed = false;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, Port> ports;
  std::map<unsigned, FaultPlan> client_faults;
  std::map<unsigned, FaultPlan> server_faults;
  unsigned clients = 0;
  unsigned servers = 0;
};

namespace {

class MemListener final : public Listener {
 public:
  MemListener(std::shared_ptr<MemNetwork::State> s, Endpoint ep) : s_(std::move(s)), ep_(std::move(ep)) {}
  ~MemListener() override {
    std::lock_guard lk(s_->mu);
    s_->ports.erase(ep_.host);
  }
  Result<std::unique_ptr<Connection>> accept() override {
    std::unique_lock lk(s_->mu);
    auto& port = s_->ports[ep_.host];
    s_->cv.wait(lk, [&] { return port.closed || !port.backlog.empty(); });
    if (port.closed) return Status(Errc::cancelled, "listener shut down");
    auto pc = port.backlog.front();
    port.backlog.pop_front();
    FaultPlan f = s_->server_faults.count(s_->servers) ? s_->server_faults[s_->servers] : FaultPlan{};
    ++s_->servers;
    return std::unique_ptr<Connection>(std::make_unique<MemConnection>(pc.to_client, pc.to_server, f, "mem-client"));
  }
  void shutdown() noexcept override {
    std::lock_guard lk(s_->mu);
    s_->ports[ep_.host].closed = true;
    s_->cv.notify_all();
  }
  [[nodiscard]] Endpoint local() const override { return ep_; }

 private:
  std::shared_ptr<MemNetwork::State> s_;
  Endpoint ep_;
};

class MemTransport final : public Transport {
 public:
  explicit MemTransport(std::shared_ptr<MemNetwork::State> s) : s_(std::move(s)) {}
  [[nodiscard]] std::string name() const override { return "mem"; }
  [[nodiscard]] Capabilities capabilities() const noexcept override { return {}; }

  Result<std::unique_ptr<Connection>> connect(const Endpoint& ep) override {
    std::lock_guard lk(s_->mu);
    auto it = s_->ports.find(ep.host);
    if (it == s_->ports.end() || it->second.closed)
      return Status(Errc::unreachable, "connect to " + ep.to_string() + ": nobody listens there");
    MemNetwork::State::PendingConn pc{std::make_shared<Pipe>(), std::make_shared<Pipe>()};
    it->second.backlog.push_back(pc);
    s_->cv.notify_all();
    FaultPlan f = s_->client_faults.count(s_->clients) ? s_->client_faults[s_->clients] : FaultPlan{};
    ++s_->clients;
    return std::unique_ptr<Connection>(std::make_unique<MemConnection>(pc.to_server, pc.to_client, f, ep.host));
  }

  Result<std::unique_ptr<Listener>> listen(const Endpoint& ep) override {
    std::lock_guard lk(s_->mu);
    if (s_->ports.count(ep.host) != 0 && !s_->ports[ep.host].closed)
      return Status(Errc::busy, "mem endpoint " + ep.host + " already listening");
    s_->ports[ep.host] = {};
    return std::unique_ptr<Listener>(std::make_unique<MemListener>(s_, ep));
  }

 private:
  std::shared_ptr<MemNetwork::State> s_;
};

}  // namespace

MemNetwork::MemNetwork() : state_(std::make_shared<State>()) {}
MemNetwork::~MemNetwork() = default;

std::unique_ptr<Transport> MemNetwork::transport() { return std::make_unique<MemTransport>(state_); }

void MemNetwork::set_client_faults(unsigned idx, FaultPlan plan) {
  std::lock_guard lk(state_->mu);
  state_->client_faults[idx] = plan;
}
void MemNetwork::set_server_faults(unsigned idx, FaultPlan plan) {
  std::lock_guard lk(state_->mu);
  state_->server_faults[idx] = plan;
}

}  // namespace bnf::transport
