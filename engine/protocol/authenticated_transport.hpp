// A Transport whose connect() proves the peer key and puts the connection in
// the secure channel before it hands it out (protocol/peer_auth.hpp). Its
// listener does not authenticate in accept(): the daemon does, on the
// connection's own worker thread, so a slow or silent peer cannot hold up the
// accept loop.
#pragma once

#include <memory>

#include "protocol/peer_auth.hpp"
#include "transport/transport.hpp"

namespace bnf::proto {

class AuthenticatedTransport final : public transport::Transport {
 public:
  AuthenticatedTransport(std::unique_ptr<transport::Transport> inner, PeerKey key,
                         transport::Protection protection = transport::Protection::encrypted)
      : inner_(std::move(inner)), key_(key), protection_(protection) {
    // OpenSSL sets its SHA-256 up on first use (0.8-2 ms measured): here,
    // not inside the first trip's handshake.
    (void)peer_proof(key_, PeerRole::connecting, Nonce{}, Nonce{}, protection_);
  }

  [[nodiscard]] std::string name() const override { return inner_->name(); }
  [[nodiscard]] transport::Capabilities capabilities() const noexcept override { return inner_->capabilities(); }
  [[nodiscard]] Result<std::unique_ptr<transport::Connection>> connect(const Endpoint& ep) override {
    BNF_ASSIGN_OR_RETURN(std::unique_ptr<transport::Connection> c, inner_->connect(ep));
    return secure_to_peer(std::move(c), key_, ep.to_string(), protection_);
  }
  [[nodiscard]] Result<std::unique_ptr<transport::Listener>> listen(const Endpoint& ep) override {
    return inner_->listen(ep);
  }
  [[nodiscard]] const PeerKey& key() const noexcept { return key_; }
  // What this host asks of its channels: encrypted (the default), or
  // integrity only where the peer agrees.
  [[nodiscard]] transport::Protection protection() const noexcept { return protection_; }

 private:
  std::unique_ptr<transport::Transport> inner_;
  PeerKey key_;
  transport::Protection protection_;
};

}  // namespace bnf::proto
