// The secure channel: every byte a Connection carries after the peer
// handshake travels in AES-256-GCM records (docs/wire-protocol.md, "Secure
// channel"). Each direction has its own key and nonce base, derived from the
// peer key and both hosts' nonces (protocol/peer_auth); a record's nonce is
// that base XOR its sequence number, so a record dropped, replayed, reordered
// or moved to another connection fails authentication.
//
//   record = u32 length (LE, 1..kMaxRecord) | body (length bytes) | tag (16)
//
// The length is authenticated data. With Protection::encrypted the body is
// ciphertext; with Protection::integrity (`--encryption off`, a trusted
// migration network) it is the plaintext, authenticated by the tag (GMAC),
// so registered memory still goes without a copy.
//
// Records follow the parts of a post(): small parts (frame headers and
// metadata) share a record, large ones (pages) get records of their own, so
// that a receiver reading a frame's payload decrypts it in place at the
// addresses it names (recv_scatter into the mapped image) rather than through
// a buffer. Bytes a record holds beyond what a read asked for are kept for
// the next read.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "transport/transport.hpp"

namespace bnf::transport {

enum class Protection : uint8_t { encrypted, integrity };
[[nodiscard]] const char* protection_name(Protection p) noexcept;

struct DirectionKey {
  std::array<uint8_t, 32> key{};
  std::array<uint8_t, 12> nonce_base{};
};

struct ChannelKeys {
  Protection protection = Protection::encrypted;
  DirectionKey send;
  DirectionKey recv;
  std::array<uint8_t, 32> exporter{};  // the same on both ends: keying_material()'s root
};

class SecureConnection final : public Connection {
 public:
  static constexpr size_t kMaxRecord = 256U << 10;
  static constexpr size_t kTagBytes = 16;
  static constexpr size_t kLengthBytes = 4;

  static Result<std::unique_ptr<SecureConnection>> over(std::unique_ptr<Connection> inner, const ChannelKeys& keys);
  ~SecureConnection() override;
  SecureConnection(const SecureConnection&) = delete;
  SecureConnection& operator=(const SecureConnection&) = delete;

  [[nodiscard]] Result<RegionHandle> register_region(std::span<const std::byte> region) override;
  [[nodiscard]] Status post(std::span<const ConstBuffer> parts) override;
  [[nodiscard]] Status flush() override;
  [[nodiscard]] Status recv(std::span<std::byte> dst) override;
  [[nodiscard]] Status recv_scatter(std::span<const MutableBuffer> parts) override;
  void limit_receives(ReceiveLimits limits) override { inner_->limit_receives(std::move(limits)); }
  void shutdown() noexcept override { inner_->shutdown(); }
  [[nodiscard]] ConnectionStats stats() const override { return inner_->stats(); }
  [[nodiscard]] std::string peer() const override { return inner_->peer(); }
  [[nodiscard]] int socket_fd() const noexcept override { return inner_->socket_fd(); }
  [[nodiscard]] Capabilities capabilities() const noexcept override { return inner_->capabilities(); }
  [[nodiscard]] bool has_pending_input() const noexcept override { return kept_pos_ < kept_.size(); }
  [[nodiscard]] std::optional<Secret> keying_material(std::string_view label) const override;
  [[nodiscard]] Protection protection() const noexcept { return keys_.protection; }

 private:
  struct Cipher;
  SecureConnection(std::unique_ptr<Connection> inner, const ChannelKeys& keys);
  Status seal(std::span<const ConstBuffer> parts, size_t bytes);
  Result<std::byte*> arena_space(size_t bytes);
  Status open_next_record(std::span<const MutableBuffer>& want, size_t& skip);
  Status fail_recv(Status s);

  // Sealed bytes wait here until the inner connection's flush; the arena is
  // registered with it, so they go without another copy. The connection owns
  // that registration; it outlives inner_ (destroyed first), whose table is
  // gone by then, so its release does nothing.
  std::vector<std::byte> arena_;
  RegionHandle arena_region_;
  size_t arena_used_ = 0;
  std::vector<std::byte> kept_;  // plaintext of the last record that the reads have not taken yet
  size_t kept_pos_ = 0;
  ChannelKeys keys_;
  std::unique_ptr<Cipher> send_;
  std::unique_ptr<Cipher> recv_;
  uint64_t send_seq_ = 0;
  uint64_t recv_seq_ = 0;
  Status recv_failure_;
  // Encrypted records never send the caller's memory: its registrations are
  // recorded here, not with inner_.
  std::shared_ptr<RegionTable> own_regions_ = std::make_shared<RegionTable>();
  std::unique_ptr<Connection> inner_;  // last: destroyed (its sends drained) before the arena
};

}  // namespace bnf::transport
