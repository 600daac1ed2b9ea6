#include "vm/source/trip_start.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include "common/elapsed.hpp"
#include "common/files.hpp"
#include "common/page.hpp"
#include "common/unix_socket.hpp"
#include "vm/source/direct_departure.hpp"
#include "vm/trip/qemu_migration.hpp"
#include "write_tracker/uffd_write_tracker.hpp"

namespace bnf::qemu {

using nlohmann::json;

namespace {

Result<UniqueFd> accept_within(int lfd, int timeout_ms) {
  pollfd p{lfd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return Status(Errc::io, "QEMU did not connect to the migration socket");
  int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return errno_status("accept migration stream", errno);
  return UniqueFd(fd);
}

// QEMU stops the VM once what is left to send fits in its downtime limit at
// the rate it measures. In an incremental trip that rate is the rate at which
// bnf takes its stream (mostly pages the destination holds: skipped, fast),
// not the wire's: QEMU would stop during its first pass with hundreds of MiB
// left (measured: 690 ms downtime, 1 GiB, 1 Gbit/s). In a full trip it stops
// at the end of its first pass with up to a limit's worth of pages never sent
// (measured: 200-270 ms at 1 GiB, 10 Gbit/s, limit 300 ms). So every trip's
// first pass runs with a limit QEMU cannot meet; from the second pass, where
// what is left is the pages the guest keeps writing, the operator's applies.

// Starts QEMU's migration into a local socket of ours and takes the connection.
// It starts before the handshake (QEMU's set-up overlaps it, its first bytes
// wait in the socket), with a downtime limit it cannot meet (see above).
// `return_path`: on when the trip can relay it (return_path.hpp).
Result<UniqueFd> start_qemu_migration(QmpClient& qmp, const std::string& sock, bool return_path, bool ignore_shared) {
  BNF_ASSIGN_OR_RETURN(UniqueFd lfd, unix_listen(sock, 1));
  BNF_TRY(
      prepare_qemu_migration(qmp, return_path, ignore_shared));  // also after a direct trip's preparation was refused
  BNF_TRY(qmp.execute("migrate", {{"uri", "unix:" + sock}}).status());
  return accept_within(lfd.get(), 10000);
}

// Pages [0, N) include every page of the VM's RAM QEMU has read so far: its
// first pass walks each RAM block from its first page up, and counts a page
// (normal or zero) as it takes it, before or as it reads it (a normal page's
// bytes go out later, from a queue), so N is QEMU's count plus the page in
// hand; the margin is generous. Unknown (or the VM already stopped): all.
uint64_t pages_read_so_far(QmpClient& qmp) {
  constexpr uint64_t kMargin = 1024;
  auto m = qmp.execute_unless_event("query-migrate", nullptr, "STOP");
  if (!m.is_ok() || !*m) return UINT64_MAX;
  const json ram = (*m)->value("ram", json::object());
  return ram.value("normal", uint64_t{0}) + ram.value("duplicate", uint64_t{0}) + kMargin;
}

// Tracks QEMU's writes to the VM's RAM from now on.
Result<std::unique_ptr<WriteTracker>> start_write_tracker(const std::string& ram_file, int qemu_pid,
                                                          const VmDefinition& def) {
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(ram_file, O_RDONLY));
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<UffdWriteTracker> t,
                       UffdWriteTracker::start(qemu_pid, fd.get(), def.memory_bytes / kPageSize));
  return std::unique_ptr<WriteTracker>(std::move(t));
}

}  // namespace

TripWriteTracker::TripWriteTracker(bool check, MigrateOptions::TrackWrites mode, bool direct, std::string ram_file,
                                   int qemu_pid, const VmDefinition& def)
    : wanted_(check && mode != MigrateOptions::TrackWrites::off && (direct || mode == MigrateOptions::TrackWrites::on)),
      ram_file_(std::move(ram_file)),
      qemu_pid_(qemu_pid),
      def_(def),
      why_not_(mode == MigrateOptions::TrackWrites::off ? "off (--write-tracker off)"
                                                        : "not in relayed trips unless asked (--write-tracker on)") {}

void TripWriteTracker::start() {
  if (!wanted_) return;
  const auto t = Clock::now();
  Result<std::unique_ptr<WriteTracker>> started = start_write_tracker(ram_file_, qemu_pid_, def_);
  start_s_ = since(t);
  if (started.is_ok())
    tracker_ = std::move(*started);
  else
    why_not_ = started.status().message();
}

TripStart::TripStart(bool direct, bool defer, Shake shake, const OpenStream& open_stream, TripWriteTracker& writes)
    : direct_(direct), defer_(defer), shake_(std::move(shake)), writes_(writes) {
  if (!direct_) return;
  early_ = std::async(std::launch::async, shake_);
  stream_ = std::async(std::launch::async, open_stream);
}

Status TripStart::begin(QmpClient& qmp, const std::string& relay_socket, bool return_path, Clock::time_point t0) {
  if (direct_) return begin_direct(qmp, t0);
  early_ = std::async(std::launch::async, shake_);
  if (defer_) return Status::ok();
  writes_.start();
  BNF_ASSIGN_OR_RETURN(qfd_, start_qemu_migration(qmp, relay_socket, return_path, false));
  migrate_issued_s_ = since(t0);
  return Status::ok();
}

Result<UniqueFd> TripStart::start_relayed(QmpClient& qmp, const std::string& relay_socket, bool return_path,
                                          bool ignore_shared, Clock::time_point t0) {
  writes_.start();
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, start_qemu_migration(qmp, relay_socket, return_path, ignore_shared));
  migrate_issued_s_ = since(t0);
  return fd;
}

uint64_t TripStart::read_before_tracking(QmpClient& qmp) {
  if (!tracking_.valid()) return 0;
  tracking_.get();
  return writes_.tracking() ? pages_read_so_far(qmp) : 0;
}

Status TripStart::begin_direct(QmpClient& qmp, Clock::time_point t0) {
  BNF_TRY(prepare_qemu_migration(qmp, true));
  BNF_ASSIGN_OR_RETURN(tunnel_, stream_.get());
  BNF_TRY(start_direct_migration(qmp, tunnel_->take_local_end()));
  migrate_issued_s_ = since(t0);
  // Arming stops QEMU's main thread and holds its mmap lock (~20 ms per
  // GiB): beside QMP's preparation it stalled that, and beside the pass's
  // setup it held back the pass's first bytes by as long (see
  // await_pass_started): it goes once the pass is under way.
  if (writes_.wanted()) BNF_TRY(await_pass_started(qmp));
  tracking_ = std::async(std::launch::async, [this] { writes_.start(); });
  return Status::ok();
}

}  // namespace bnf::qemu
