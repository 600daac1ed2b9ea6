// The per-host agent: listens on an endpoint, serves pushes into its snapshot
// store, and shuts down cleanly (in-flight transfers roll back) on stop().
// Every connection, both ways, first proves the peer key (protocol/peer_auth).
#pragma once

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

#include "common/log.hpp"
#include "protocol/authenticated_transport.hpp"
#include "push/push_receiver.hpp"
#include "snapshot/snapshot_store.hpp"
#include "transport/transport.hpp"

namespace bnf {

class Daemon {
 public:
  Daemon(std::string state_dir, std::unique_ptr<transport::Transport> transport, const proto::PeerKey& key,
         const Logger& log, transport::Protection protection = transport::Protection::encrypted);
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
    std::thread thread;
    std::atomic<bool> finished{false};
  };
  void reap(bool all);
  void serve(Worker& w, ReceiverContext& ctx);

  SnapshotStore store_;
  SessionRegistry sessions_;
  proto::AuthenticatedTransport transport_;
  const Logger& log_;
  std::unique_ptr<transport::Listener> listener_;
  std::mutex mu_;
  std::list<Worker> workers_;
  std::atomic<bool> stopping_{false};
  std::function<Status(transport::Connection&, const proto::Frame&)> vm_handler_;
};

}  // namespace bnf
