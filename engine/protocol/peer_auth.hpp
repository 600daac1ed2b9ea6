// Peer authentication: every connection to a bnf port starts by both hosts
// proving they hold the same secret, the peer key, before either acts on a
// frame. A daemon launches QEMU with the arguments a migrating VM's definition
// carries, so a port that took any peer would hand out command execution.
//
//   connecting host  PEER_HELLO {nonce_c} ─────────────▶
//                    ◀──── PEER_CHALLENGE {nonce_l, proof_l}   listening host
//                    PEER_PROOF {proof_c} ─────────────▶  (then the connection's own first frame)
//
// proof = HMAC-SHA256(key, role ‖ nonce_c ‖ nonce_l), with a different role
// string for each side, so neither proof can be replayed as the other's and a
// recorded exchange is worthless against fresh nonces. The key is never sent.
// This authenticates; it does not encrypt: frames after it travel in the clear
// (docs/operations.md: keep the bnf port on a private network or a tunnel).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "common/status.hpp"
#include "transport/transport.hpp"

namespace bnf::proto {

class PeerKey {
 public:
  static constexpr size_t kBytes = 32;
  using Bytes = std::array<uint8_t, kBytes>;

  explicit PeerKey(const Bytes& bytes) : bytes_(bytes) {}
  // A new random key (tests; the daemon's first start).
  static PeerKey generate();
  // Reads a key file: 64 hex digits. Refuses a file other users can read.
  static Result<PeerKey> load(const std::string& path);
  // Loads `path`, or creates it (random, mode 0600) if it does not exist. Two
  // processes creating it at once end up with the same key.
  static Result<PeerKey> load_or_create(const std::string& path);

  [[nodiscard]] const Bytes& bytes() const noexcept { return bytes_; }

 private:
  Bytes bytes_;
};

using Nonce = std::array<uint8_t, 32>;
using Proof = std::array<uint8_t, 32>;

enum class PeerRole : uint8_t { connecting, listening };
// The proof `role` gives for the nonces of one exchange.
[[nodiscard]] Proof peer_proof(const PeerKey& key, PeerRole role, const Nonce& connecting, const Nonce& listening);

// The connecting host's side, on a new connection to `peer_name`: fails with
// Errc::denied when the peer does not prove it holds `key` (or rejects ours).
[[nodiscard]] Status authenticate_to_peer(transport::Connection& c, const PeerKey& key, const std::string& peer_name);
// The listening host's side, before it reads the connection's first frame.
[[nodiscard]] Status authenticate_peer(transport::Connection& c, const PeerKey& key);

}  // namespace bnf::proto
