// A VM's arrival on this host, one trip object with named phases:
//
//   plan        full, or incremental against the retained snapshot when it
//               is exactly the image the VM left with (plan_arrival)
//   accept      the answer to VM_HELLO: mode, lineage, epoch, digest key
//   start_qemu  our QEMU starts on a thread of its own (arriving_qemu.hpp)
//   transfer    pages land in the image, the stream goes to our QEMU, the
//               image is settled: relayed_arrival.hpp or direct_arrival.hpp
//   switch_over our QEMU has loaded the device state and runs the VM
//   commit      the image becomes the snapshot, live for the VM
//
// The registry records the VM as running here, then VM_DONE tells the source.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "bitmap/writes_since_arrival.hpp"
#include "common/log.hpp"
#include "launch/qemu_process.hpp"
#include "launch/vm_definition.hpp"
#include "protocol/control.hpp"
#include "snapshot/snapshot_store.hpp"
#include "transport/transport.hpp"
#include "vm/destination/stream_rendezvous.hpp"
#include "vm/trip/vm_dir.hpp"

namespace bnf::qemu {

// What an arriving VM's trip is to be: the write plan (full or incremental
// against the retained snapshot) and, for a full trip that could have been
// incremental, why not.
struct ArrivalPlan {
  WritePlan plan;
  std::string fallback;
};
// Incremental only when our retained snapshot is exactly the source's arrival image.
Result<ArrivalPlan> plan_arrival(const SnapshotStore& store, const VmDefinition& def, const nlohmann::json& hello,
                                 const std::string& peer);

struct ArrivalTimes {
  std::chrono::steady_clock::time_point receive, stream_end, loaded, committed;
};
// A trip that arrived: the committed image, the QEMU that runs it, and what
// VM_DONE tells the source.
struct Arrived {
  Manifest manifest;
  std::string image_file;
  std::optional<QemuProcess> proc;
  std::string stream_for_source;  // direct trips: the device-state blob the source did not see
  double resumed_at = 0;
  ArrivalTimes times;
  // Shared mode: the tracker armed before the guest ran here (the bitmap since arrival).
  ArrivalTracking tracking{nullptr, "the VM arrived in stream mode"};
};

// What an arrival uses of the daemon.
struct ArrivalServices {
  SnapshotStore& store;
  StreamRendezvous& streams;  // direct trips' QEMU streams, until their trips take them
  const Logger& log;
  unsigned peer_timeout_ms;
  bool background_qemu;  // a direct trip's QEMU may start at the lowest CPU priority
};

class ArrivingQemu;

class ArrivingTrip {
 public:
  // `hello`: VM_HELLO, whose definition `def` is (checked by the caller).
  ArrivingTrip(const ArrivalServices& services, transport::Connection& c, const VmDefinition& def,
               const nlohmann::json& hello, VmDir dir);

  Result<Arrived> run();
  [[nodiscard]] const ArrivalPlan& plan() const { return plan_; }

 private:
  Status accept(const SnapshotWriter& w, bool direct);
  Result<Digest> transfer(SnapshotWriter& w, ArrivingQemu& qemu, bool direct, Arrived& got);
  Status switch_over(ArrivingQemu& qemu, Arrived& got);
  void arm_tracking(const SnapshotWriter& w, const ArrivingQemu& qemu, Arrived& got) const;

  const ArrivalServices& services_;
  transport::Connection& c_;
  const VmDefinition& def_;
  const nlohmann::json& hello_;
  VmDir dir_;
  ArrivalPlan plan_;
  std::string stream_token_;  // a direct trip's stream connection is named by it
  bool shared_ = false;       // shared mode: the source sends the RAM file's pages, QEMU the rest
};

// After the registry recorded the arrival: the source's copy of the device
// state it did not see (direct trips), then VM_DONE with the root and timings.
Status send_vm_done(transport::Connection& c, const Arrived& got);

// A direct trip's QEMU stream (a connection whose first frame is VM_STREAM,
// `f`), held until its trip, named by the same token, has read it to the end.
Status serve_direct_stream(transport::Connection& c, const proto::Frame& f, StreamRendezvous& streams);

// VM_HELLO's version and VM definition.
Result<VmDefinition> read_vm_hello(const nlohmann::json& hello);

}  // namespace bnf::qemu
