// Source side of a direct trip (see direct_arrival.hpp): QEMU migrates
// straight to the destination daemon, on a connection of its own
// (stream_rendezvous.hpp); this daemon watches it
// over QMP, re-hashes the stopped VM (that table is the departure table) and
// settles the destination's image before its QEMU gets the device state.
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "common/unique_fd.hpp"
#include "common/uri.hpp"
#include "digest/live_digest_table.hpp"
#include "digest/page_digest.hpp"
#include "protocol/authenticated_transport.hpp"
#include "qmp/qmp_client.hpp"
#include "transport/transport.hpp"
#include "vm/trip/stream_tunnel.hpp"

namespace bnf::qemu {

struct DirectDepartureSetup {
  std::string destination;  // the destination daemon, for messages
  int downtime_limit_ms = 300;
  unsigned peer_timeout_ms = 30000;  // no progress this long: the destination is out of reach
  std::span<const std::byte> ram;    // the VM's RAM file, mapped read-only
  int ram_file = -1;                 // ... and open (its holes are zero pages: not read)
  // Keeps `ram` mapped and `ram_file` open: what the check leaves for after
  // the downtime is hashed after depart_direct returns (DepartureTableRest).
  std::shared_ptr<const void> ram_owner;
  int qemu_pid = 0;  // its migration thread's CPU wait sizes the tail (direct_departure.cpp)
  // Settle the destination's image with the stopped VM before it runs there
  // (the switchover check). Off: QEMU's stream is trusted, as native QEMU does.
  bool switchover_check = true;
  bool check_all_before_resume = true;  // ... over every page before the destination resumes
  // QEMU's writes to `ram` since the tracker started (null: untracked, and
  // `no_tracker` says why): the check's table is then hashed ahead while the
  // pass leaves CPU idle, the downtime compares only what the guest wrote,
  // what was hashed ahead and what QEMU read before the tracker started, and
  // the rest once the VM runs there.
  std::unique_ptr<WriteTracker> tracker;
  std::string no_tracker;
  uint64_t read_before_tracking = 0;  // pages [0, this) QEMU may have read before the tracker started
  std::function<void(const nlohmann::json&)> progress;
};

// The pages the downtime left (neither written nor hashed ahead), being
// hashed while the VM resumes on the destination; table() waits for them.
class DepartureTableRest {
 public:
  // `ram_owner` keeps the memory `live` reads mapped until the hashing is done.
  DepartureTableRest(std::shared_ptr<const void> ram_owner, std::unique_ptr<LiveDigestTable> live, unsigned threads);
  DigestTable table() { return done_.get(); }
  [[nodiscard]] const LiveDigestCounts& counts() const { return live_->counts(); }  // after table()

 private:
  std::shared_ptr<const void> ram_owner_;  // first: goes last
  std::unique_ptr<LiveDigestTable> live_;
  std::future<DigestTable> done_;  // last: waited for before live_ goes
};

// NOLINTNEXTLINE(bugprone-exception-escape): its members' destructors do not throw
struct DirectDeparture {
  // The VM's memory at the stop; when `rest` is set, the table is its
  // table() and the roots are still to be compared (VM_DONE's, `done`).
  DigestTable table;
  std::shared_ptr<DepartureTableRest> rest;
  std::string stream_kept;  // the stream the destination QEMU got (device state)
  nlohmann::json done;      // VM_DONE
  nlohmann::json stop_event;
  nlohmann::json qemu_stats;       // query-migrate at the end
  uint64_t pages_resent = 0;       // pages that differed at the settle
  bool unchecked_differs = false;  // check off: the destination's image is not the stopped VM
  double stop_seen_s = 0;          // QEMU's STOP event -> seen here (the re-hash starts)
  double rehash_s = 0;             // re-hashing the stopped VM in the downtime (check off: after it)
  LiveDigestCounts rehash_counts;  // ... pages hashed ahead of the stop and in it, faulted in before it
  double settle_s = 0;             // VM_LANDED -> VM_END sent
  double tail_ms = 0;              // what QEMU was left to send once stopped, in first-pass time
  std::string held_back_by;        // why that tail: "cpu" (QEMU waited for CPUs) or "link"
  int stop_limit_ms = 0;           // the downtime limit that stopped QEMU as its pass ended (0: none)
  double qemu_cpu_wait = -1;       // share of the pass QEMU's migration thread waited for a CPU (-1: unknown)
};

// The source's half of the settle: `table` is the stopped VM's memory where
// `final_pages` says (null: everywhere), `ram` its bytes. Sends VM_EXPECT
// (the root if the whole table is final; else empty: the destination keeps
// what it holds then, and the rest is compared after VM_DONE); unless the
// destination's VM_LANDED says it holds that root, answers it, sends the pages
// that differ and VM_END with the same root. Returns how many pages it sent.
Result<uint64_t> settle_with_destination(transport::Connection& c, const PageDigester& h, const DigestTable& table,
                                         const PageBitmap* final_pages, std::span<const std::byte> ram);

// Opens QEMU's stream connection to the destination daemon at `to` and names
// it by `token` (VM_STREAM; the handshake's VM_HELLO names it too), after
// both daemons proved the peer key on it; QEMU's stream goes through the
// tunnel's secure channel.
Result<std::unique_ptr<StreamTunnel>> open_direct_stream(const Endpoint& to, const std::string& token,
                                                         const proto::AuthenticatedTransport& t,
                                                         unsigned peer_timeout_ms);
// Has QEMU migrate on the tunnel's local end (`getfd`, `migrate fd:`); our
// copy closes here, so QEMU's close is the tunnel's EOF. QEMU must have been
// prepared with its return path on (prepare_qemu_migration).
Status start_direct_migration(QmpClient& qmp, UniqueFd stream);

// Returns once QEMU's migration has left its setup (or after `limit`): the
// migration thread sets the pass up holding the lock QMP and QEMU's main
// thread need, so anything that stops the main thread meanwhile (arming the
// write tracker) delays the pass's first bytes by as long (1 GiB over
// 1 Gbit/s: the link idle for the first ~50 ms after `migrate` instead of
// ~20). An error only if QMP fails.
Status await_pass_started(QmpClient& qmp, std::chrono::milliseconds limit = std::chrono::seconds(2));

// After start_direct_migration and a handshake that agreed on the direct trip.
Result<DirectDeparture> depart_direct(QmpClient& qmp, transport::Connection& c, const PageDigester& h,
                                      DirectDepartureSetup s);

}  // namespace bnf::qemu
