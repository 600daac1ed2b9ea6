// The per-host agent: listens on an endpoint, serves pushes into its snapshot
// store, and shuts down cleanly (in-flight transfers roll back) on stop().
// Every connection, both ways, first proves the peer key (protocol/peer_auth).
#pragma once

#include <atomic>
#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

#include "agent/pre_auth_gate.hpp"
#include "common/log.hpp"
#include "protocol/authenticated_transport.hpp"
#include "push/push_receiver.hpp"
#include "snapshot/snapshot_store.hpp"
#include "transport/transport.hpp"

namespace bnf {

// What bounds a peer's hold on the daemon (docs/operations.md, "Limits").
struct DaemonLimits {
  // A connection that has not completed the peer exchange by then is closed.
  std::chrono::milliseconds handshake_deadline{5000};
  // Connections waiting to authenticate, per source address and in all.
  PreAuthGate::Caps pre_auth;
  // After the exchange: a receive that gets no byte for this long fails (--peer-timeout).
  std::chrono::milliseconds peer_timeout{30000};
};

class Daemon {
 public:
  Daemon(std::string state_dir, std::unique_ptr<transport::Transport> transport, const proto::PeerKey& key,
         const Logger& log, DaemonLimits limits = {},
         transport::Protection protection = transport::Protection::encrypted);
  ~Daemon();

  // Opens the store (recovering interrupted transfers) and starts listening.
  Status start(const Endpoint& listen);
  [[nodiscard]] Endpoint local() const { return listener_->local(); }
  // Serves until stop() is called from another thread.
  void run();
  void stop() noexcept;

  [[nodiscard]] SnapshotStore& store() { return store_; }
  // Connections it opens prove the peer key too.
  [[nodiscard]] proto::AuthenticatedTransport& transport() { return transport_; }
  // Handles connections that open with VM_HELLO (set before run()).
  void set_vm_handler(std::function<Status(transport::Connection&, const proto::Frame&)> h) {
    vm_handler_ = std::move(h);
  }

 private:
  struct Worker {
    std::unique_ptr<transport::Connection> conn;
    PreAuthGate::Ticket pre_auth;  // released once the peer authenticated
    std::thread thread;
    std::atomic<bool> finished{false};
  };
  void reap(bool all);
  void prove_retained();
  void serve(Worker& w, ReceiverContext& ctx);
  void serve_guarded(Worker& w, ReceiverContext& ctx) noexcept;
  [[nodiscard]] transport::ReceiveLimits handshake_limits() const;
  void note_refused(const std::string& peer, const std::string& why);

  SnapshotStore store_;
  SessionRegistry sessions_;
  proto::AuthenticatedTransport transport_;
  const Logger& log_;
  const DaemonLimits limits_;
  PreAuthGate pre_auth_;
  std::chrono::steady_clock::time_point last_refusal_log_{};
  uint64_t refusals_unlogged_ = 0;
  std::unique_ptr<transport::Listener> listener_;
  std::mutex mu_;
  std::list<Worker> workers_;
  std::atomic<bool> stopping_{false};
  std::function<Status(transport::Connection&, const proto::Frame&)> vm_handler_;
};

}  // namespace bnf
