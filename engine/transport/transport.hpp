// The transport interface: one per concept, one folder per implementation.
//
//   Transport  -- a factory: listen() / connect() on an Endpoint.
//   Connection -- an ordered, reliable byte stream between two engines with
//                 explicit back-pressure and optional zero-copy.
//
// The shape follows NIXL's backends: memory is *registered* once
// (register_region, which hands back a RegionHandle), sends are *posted*
// against it (post), and completion is *checked* (flush). A part of a post()
// that lies inside a region registered at the time is sent without a copy and
// must stay unchanged until flush() returns; any other part is copied at
// post() time. post() blocks when the transport's window is
// full: back-pressure is explicit, no unbounded queue hides behind it.
// Receiving lands bytes where the caller says: recv_scatter() takes the final
// addresses (pages of the mapped image), so nothing is staged in between.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/status.hpp"
#include "common/uri.hpp"
#include "transport/receive_limits.hpp"
#include "transport/region.hpp"

namespace bnf::transport {

struct ConstBuffer {
  const std::byte* data = nullptr;
  size_t size = 0;
};
struct MutableBuffer {
  std::byte* data = nullptr;
  size_t size = 0;
};

using Secret = std::array<uint8_t, 32>;

struct ConnectionStats {
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t send_ops = 0;          // send submissions (batches) issued
  uint64_t zc_bytes = 0;          // bytes posted for zero-copy send
  uint64_t zc_notifications = 0;  // zero-copy completions the kernel reported
  uint64_t zc_copied = 0;         // ... of which the kernel had to copy after all
};

// What a transport's connections can do beyond posting and receiving.
// Callers ask for a capability; they never compare transport names.
struct Capabilities {
  // socket_fd() is a descriptor that polls readable when bytes arrive, so a
  // caller may wait on it beside others (the return-path relay, a QEMU
  // stream's tunnel, both of which wait on QEMU's socket too).
  bool pollable = false;
};

class Connection {
 public:
  virtual ~Connection() = default;

  // Marks `region` as memory that may be sent without a copy, for as long as
  // the returned handle holds it (region.hpp: ownership and lifetime). The
  // caller keeps the bytes mapped while the handle lives.
  [[nodiscard]] virtual Result<RegionHandle> register_region(std::span<const std::byte> region) = 0;
  [[nodiscard]] virtual Status post(std::span<const ConstBuffer> parts) = 0;
  [[nodiscard]] virtual Status flush() = 0;

  // Receives exactly dst.size() bytes / exactly the sum of the parts.
  [[nodiscard]] virtual Status recv(std::span<std::byte> dst) = 0;
  [[nodiscard]] virtual Status recv_scatter(std::span<const MutableBuffer> parts) = 0;
  // Bounds the receives from now on (receive_limits.hpp); one that fails by
  // them fails the connection.
  virtual void limit_receives(ReceiveLimits limits) = 0;

  // Unblocks pending operations on both sides; later calls fail. (A post
  // waiting for the kernel's zero-copy completions waits for the peer:
  // uring_tcp.hpp.)
  virtual void shutdown() noexcept = 0;
  [[nodiscard]] virtual ConnectionStats stats() const = 0;
  [[nodiscard]] virtual std::string peer() const = 0;
  // The connection's socket, to wait on it beside other descriptors (poll);
  // -1 if the transport has none. Only the connection reads or writes it.
  [[nodiscard]] virtual int socket_fd() const noexcept { return -1; }
  [[nodiscard]] virtual Capabilities capabilities() const noexcept { return {.pollable = socket_fd() >= 0}; }
  // Bytes already received and not yet read: a wait on socket_fd() would
  // not see them.
  [[nodiscard]] virtual bool has_pending_input() const noexcept { return false; }
  // A secret both ends of a secure channel derive for `label` (as TLS
  // exporters do); none on a connection without one.
  [[nodiscard]] virtual std::optional<Secret> keying_material(std::string_view /*label*/) const { return std::nullopt; }
};

class Listener {
 public:
  virtual ~Listener() = default;
  [[nodiscard]] virtual Result<std::unique_ptr<Connection>> accept() = 0;
  virtual void shutdown() noexcept = 0;
  [[nodiscard]] virtual Endpoint local() const = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  [[nodiscard]] virtual std::string name() const = 0;
  // What every connection this transport makes or accepts can do.
  [[nodiscard]] virtual Capabilities capabilities() const noexcept = 0;
  [[nodiscard]] virtual Result<std::unique_ptr<Connection>> connect(const Endpoint& ep) = 0;
  [[nodiscard]] virtual Result<std::unique_ptr<Listener>> listen(const Endpoint& ep) = 0;
};

// Convenience: post + nothing else for small control messages.
inline Status post_bytes(Connection& c, std::span<const std::byte> a, std::span<const std::byte> b = {},
                         std::span<const std::byte> d = {}) {
  const ConstBuffer parts[] = {{a.data(), a.size()}, {b.data(), b.size()}, {d.data(), d.size()}};
  return c.post(parts);
}

}  // namespace bnf::transport
