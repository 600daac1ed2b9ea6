// A Connection over a blocking socket, borrowed or owned: the source side of
// a direct trip's QEMU stream (stream_tunnel), which one thread relays both
// ways. No zero-copy, no window: each post() is sent before it returns.
#pragma once

#include <memory>

#include "common/unique_fd.hpp"
#include "transport/transport.hpp"

namespace bnf::transport {

class PlainConnection final : public Connection {
 public:
  explicit PlainConnection(int fd) : fd_(fd) {}
  explicit PlainConnection(UniqueFd fd) : owned_(std::move(fd)), fd_(owned_.get()) {}

  // Every byte is sent by send(2), copied: a registration only names the region.
  [[nodiscard]] Result<RegionHandle> register_region(std::span<const std::byte> region) override {
    return regions_->add(region);
  }
  [[nodiscard]] Status post(std::span<const ConstBuffer> parts) override;
  [[nodiscard]] Status flush() override { return Status::ok(); }
  [[nodiscard]] Status recv(std::span<std::byte> dst) override;
  [[nodiscard]] Status recv_scatter(std::span<const MutableBuffer> parts) override;
  void limit_receives(ReceiveLimits limits) override { limits_ = std::move(limits); }
  void shutdown() noexcept override;
  [[nodiscard]] ConnectionStats stats() const override { return stats_; }
  [[nodiscard]] std::string peer() const override;
  [[nodiscard]] int socket_fd() const noexcept override { return fd_; }

 private:
  Status wait_readable();
  UniqueFd owned_;
  int fd_;
  ConnectionStats stats_;
  ReceiveLimits limits_;
  std::shared_ptr<RegionTable> regions_ = std::make_shared<RegionTable>();
};

}  // namespace bnf::transport
