// A VM's departure from this host, one trip object with named phases:
//
//   choose     shared or stream mode (shared_trip.hpp): in shared mode the
//              rounds' write tracker is armed before anything else
//   begin      the agreement and (direct trips) QEMU's own stream connection
//              start at once (trip_start.hpp)
//   start_qemu QEMU's migration starts, into our socket (relayed) or the
//              stream's tunnel (direct); the write tracker is armed
//   agree      the destination's answer: full or incremental, direct or not
//   transfer   the pages and the stream, the settle and the switch over:
//              shared_trip.hpp, relayed_trip.hpp or direct_trip.hpp
//   commit     our QEMU quits; its RAM file becomes the retained snapshot
//
// A failure before the commit leaves the VM running here.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "bitmap/writes_since_arrival.hpp"
#include "common/log.hpp"
#include "common/uri.hpp"
#include "launch/qemu_process.hpp"
#include "launch/vm_definition.hpp"
#include "protocol/authenticated_transport.hpp"
#include "qmp/qmp_client.hpp"
#include "snapshot/snapshot_store.hpp"
#include "vm/registry/warm_ram.hpp"
#include "vm/source/trip_context.hpp"
#include "vm/source/trip_start.hpp"
#include "vm/trip/migration_report.hpp"

namespace bnf::qemu {

// What a departure uses of the daemon.
struct DepartureServices {
  SnapshotStore& store;
  proto::AuthenticatedTransport& transport;  // its connections prove the peer key
  const Logger& log;
  unsigned peer_timeout_ms;
};

// The VM as it runs here; the registry holds it busy for the trip.
struct DepartingVm {
  const VmDefinition& def;
  const std::string& ram_file;
  QemuProcess& proc;
  WarmRam* warm;              // its RAM, kept mapped while it ran here (null: not mapped)
  ArrivalTracking& tracking;  // the pages its guest wrote since it arrived, or why that is lost
  std::string qmp_socket;
  std::string relay_socket;  // where a relayed trip's QEMU migrates to
};

class Departure {
 public:
  using Progress = std::function<void(const nlohmann::json&)>;
  // Once the retained snapshot is committed: the registry records that the
  // VM left (its QEMU has quit, its warm mapping may go).
  using Left = std::function<Status(const Manifest&)>;

  // `force_full` (not empty): ask for a full trip, saying why.
  Departure(const DepartureServices& services, DepartingVm vm, Endpoint to, const MigrateOptions& opt,
            Progress progress, std::string force_full);
  Departure(const Departure&) = delete;
  Departure& operator=(const Departure&) = delete;

  Result<MigrationReport> run(const Left& left);

 private:
  Status choose_ram_mode();
  void begin();
  Status start_qemu();
  Result<Departed> transfer_shared(TripContext& x);
  Status agree();
  Result<Departed> transfer();
  Status commit(Departed& d, WalksPaused& walks, const Left& left);
  void release_zero_pages(const Manifest& dep, const DigestTable& table, MigrationReport& rep);
  Status fail_here(const Status& st);

  const DepartureServices& services_;
  DepartingVm vm_;
  Endpoint to_;
  const MigrateOptions& opt_;
  Progress progress_;
  std::string force_full_;
  Clock::time_point t0_ = Clock::now();
  double t0_wall_ = QmpClient::wall_now();
  bool offer_direct_ = false;  // no arrival record: a full trip, which may go direct
  std::string stream_token_;   // names a direct trip's stream connection
  bool check_ = false;         // the switchover check is on
  bool return_path_ = false;   // QEMU's return path is relayed
  Clock::time_point t_stream_;
  std::optional<TripWriteTracker> writes_;
  std::optional<TripStart> start_;
  std::optional<QmpClient> qmp_;
  std::unique_ptr<transport::Connection> c_;  // the bnf connection, once agreed
  std::optional<Agreement> agreed_;
  uint64_t read_before_tracking_ = 0;
  bool shared_ = false;                           // shared mode offered: the rounds' tracker is armed
  std::unique_ptr<WriteTracker> shared_tracker_;  // armed for this trip, where the VM has no tracker since arrival
  std::string ram_mode_reason_;                   // why the trip is not shared
};

}  // namespace bnf::qemu
