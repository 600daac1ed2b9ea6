// The receiving side of a push: one PushSession per control connection; data
// connections attach to it and land pages straight into the snapshot image.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "digest/page_digest.hpp"
#include "protocol/control.hpp"
#include "snapshot/snapshot_store.hpp"
#include "transport/transport.hpp"

namespace bnf {

class PushSession;

// Sessions by id, so that data connections can find theirs. Owned by the daemon.
class SessionRegistry {
 public:
  void add(const std::string& id, std::shared_ptr<PushSession> s);
  void remove(const std::string& id);
  std::shared_ptr<PushSession> find(const std::string& id);

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<PushSession>> sessions_;
};

struct ReceiverContext {
  SnapshotStore& store;
  SessionRegistry& sessions;
  const Logger& log;
  // Incoming VM migrations, connections that open with VM_HELLO or VM_STREAM
  // (set by the QEMU side of the daemon; unset: refused).
  std::function<Status(transport::Connection&, const proto::Frame&)> on_migration;
  // After the peer exchange, no receive waits longer than this for a byte
  // (a push's control connection counts its data streams' bytes too).
  std::chrono::milliseconds peer_timeout{30000};
};

// Serves one connection whose first frame has not been read yet: a HELLO makes
// it a control connection, an ATTACH a data connection, VM_HELLO / VM_STREAM
// part of a VM migration.
void serve_connection(transport::Connection& c, ReceiverContext& ctx);

}  // namespace bnf
