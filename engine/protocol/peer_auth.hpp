// Peer authentication and the secure channel's keys: every connection to a
// bnf port starts by both hosts proving they hold the same secret, the peer
// key, before either acts on a frame. A daemon launches QEMU with the
// arguments a migrating VM's definition carries, so a port that took any peer
// would hand out command execution.
//
//   connecting host  PEER_HELLO {version, nonce_c, protection wanted} ──▶
//                    ◀── PEER_CHALLENGE {nonce_l, protection, proof_l}   listening host
//                    PEER_PROOF {proof_c} ──▶  (then the secure channel)
//
// proof = HMAC-SHA256(key, role ‖ nonce_c ‖ nonce_l ‖ protection), with a
// different role string for each side, so neither proof can be replayed as
// the other's, a recorded exchange is worthless against fresh nonces, and the
// protection the two agreed on cannot be changed on the way. The key is never
// sent. From then on every byte travels in the records of
// transport/secure, with per-connection keys derived from the peer key and
// both nonces (HKDF-SHA256); encryption is on unless both hosts turned it off.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.hpp"
#include "digest/page_digest.hpp"
#include "transport/secure/secure_connection.hpp"
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
// The proof `role` gives for the nonces of one exchange and the protection agreed in it.
[[nodiscard]] Proof peer_proof(const PeerKey& key, PeerRole role, const Nonce& connecting, const Nonce& listening,
                               transport::Protection agreed);
// The channel keys of one connection, as side `role` uses them.
[[nodiscard]] Result<transport::ChannelKeys> derive_channel_keys(const PeerKey& key, PeerRole role,
                                                                 const Nonce& connecting, const Nonce& listening,
                                                                 transport::Protection agreed);

// The connecting host's side, on a new connection to `peer_name`: fails with
// Errc::denied when the peer does not prove it holds `key` (or rejects ours).
// `wanted`: encrypted, or integrity only if the peer agrees.
[[nodiscard]] Result<transport::ChannelKeys> authenticate_to_peer(transport::Connection& c, const PeerKey& key,
                                                                  const std::string& peer_name,
                                                                  transport::Protection wanted);
// The listening host's side, before it reads the connection's first frame.
[[nodiscard]] Result<transport::ChannelKeys> authenticate_peer(transport::Connection& c, const PeerKey& key,
                                                               transport::Protection wanted);

// The connecting side's authentication, and the connection put inside the
// secure channel.
[[nodiscard]] Result<std::unique_ptr<transport::Connection>> secure_to_peer(std::unique_ptr<transport::Connection> c,
                                                                            const PeerKey& key,
                                                                            const std::string& peer_name,
                                                                            transport::Protection wanted);

// A lineage's digest key as it crosses in ACCEPT / VM_ACCEPT: XORed with a
// secret both ends of the connection's secure channel derive, so it is never
// on a link in clear, not even on an integrity-only channel. A connection
// without the channel cannot carry it.
[[nodiscard]] Result<std::string> seal_digest_key(const transport::Connection& c, const DigestKey& key);
[[nodiscard]] Result<DigestKey> open_digest_key(const transport::Connection& c, std::string_view sealed_hex);

}  // namespace bnf::proto
