// How a departure begins: QEMU's migration starts, the write tracker is
// armed and the agreement with the destination runs beside them.
#pragma once

#include <functional>
#include <future>
#include <memory>
#include <string>

#include "bitmap/write_tracker.hpp"
#include "common/unique_fd.hpp"
#include "launch/vm_definition.hpp"
#include "qmp/qmp_client.hpp"
#include "transport/transport.hpp"
#include "vm/registry/warm_ram.hpp"
#include "vm/source/agreement.hpp"
#include "vm/source/trip_context.hpp"
#include "vm/trip/stream_tunnel.hpp"

namespace bnf::qemu {

// A VM's warm-RAM walks, paused for a trip and resumed if the VM stays here.
class WalksPaused {
 public:
  explicit WalksPaused(WarmRam* w) : warm_(w) {
    if (warm_) warm_->pause_walks();
  }
  ~WalksPaused() {
    if (warm_) warm_->resume_walks();
  }
  WalksPaused(const WalksPaused&) = delete;
  WalksPaused& operator=(const WalksPaused&) = delete;
  // The VM left: its warm mapping goes with its QEMU, nothing to resume.
  void forget() { warm_ = nullptr; }

 private:
  WarmRam* warm_;
};

// The switchover check learns from QEMU's writes which pages it need not
// hash again at the stop (UffdWriteTracker): a page nothing wrote since the
// tracker started and QEMU read after that is as QEMU read it. Direct trips
// track by default (their check hashes the RAM itself), armed as the pass
// begins, beside the handshake (read_before_tracking); relayed ones only if
// asked (measured slower, see stream-mode-design), before `migrate`.
class TripWriteTracker {
 public:
  TripWriteTracker(bool check, MigrateOptions::TrackWrites mode, bool direct, std::string ram_file, int qemu_pid,
                   const VmDefinition& def);

  void start();
  [[nodiscard]] bool wanted() const { return wanted_; }
  [[nodiscard]] bool tracking() const { return tracker_ != nullptr; }
  [[nodiscard]] double start_s() const { return start_s_; }
  [[nodiscard]] const std::string& why_not() const { return why_not_; }
  [[nodiscard]] std::unique_ptr<WriteTracker> take() { return std::move(tracker_); }

 private:
  bool wanted_;
  std::string ram_file_;
  int qemu_pid_;
  const VmDefinition& def_;
  std::string why_not_;
  double start_s_ = 0;
  std::unique_ptr<WriteTracker> tracker_;
};

// The agreement and the connection it was reached on.
struct Handshake {
  std::unique_ptr<transport::Connection> c;
  Agreement g;
};

// How a trip begins on the source. Direct: the handshake and QEMU's own
// stream connection (destination/stream_rendezvous.hpp) start at once, beside
// QMP's preparation. Relayed: the handshake starts beside the tracker's start
// and `migrate`, and QEMU's first bytes wait in our socket meanwhile.
class TripStart {
 public:
  using Shake = std::function<Result<Handshake>()>;
  using OpenStream = std::function<Result<std::unique_ptr<StreamTunnel>>()>;
  // `defer` (shared mode offered): begin() starts only the handshake; QEMU's
  // migration waits for start_relayed(), after bnf's rounds.
  TripStart(bool direct, bool defer, Shake shake, const OpenStream& open_stream, TripWriteTracker& writes);

  // QEMU's migration starts; `relay_socket` and `return_path` for relayed trips.
  Status begin(QmpClient& qmp, const std::string& relay_socket, bool return_path, Clock::time_point t0);
  // A deferred relayed migration starts now; `ignore_shared`: QEMU leaves the
  // RAM file's block out (shared mode). Returns QEMU's stream socket.
  Result<UniqueFd> start_relayed(QmpClient& qmp, const std::string& relay_socket, bool return_path, bool ignore_shared,
                                 Clock::time_point t0);
  Result<Handshake> handshake() { return early_.get(); }
  // A direct trip's tracker starts after QEMU's pass began (arming takes ~20
  // ms per GiB): what QEMU read by then is compared at the stop whatever the
  // tracker says.
  uint64_t read_before_tracking(QmpClient& qmp);
  [[nodiscard]] double migrate_issued_s() const { return migrate_issued_s_; }
  [[nodiscard]] bool deferred() const { return defer_; }
  UniqueFd take_qemu_socket() { return std::move(qfd_); }
  void close_stream() { tunnel_.reset(); }

 private:
  Status begin_direct(QmpClient& qmp, Clock::time_point t0);

  bool direct_;
  bool defer_;
  Shake shake_;
  TripWriteTracker& writes_;
  double migrate_issued_s_ = 0;
  std::future<Result<Handshake>> early_;
  std::future<void> tracking_;  // a direct trip's tracker, armed once QEMU's pass is under way
  std::future<Result<std::unique_ptr<StreamTunnel>>> stream_;
  std::unique_ptr<StreamTunnel> tunnel_;  // relays QEMU's stream until the trip is over
  UniqueFd qfd_;                          // a relayed trip's QEMU stream socket
};

}  // namespace bnf::qemu
