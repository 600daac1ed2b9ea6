// Source side of a VM migration: QEMU migrates into a local UNIX socket; the
// codec takes the main RAM block's pages out of the stream; pages the
// destination's base lacks travel as PAGES/ZEROS frames, the rest of the stream
// as STREAM frames, all on one ordered connection.
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/unix_socket.hpp"
#include "qmp/qmp_client.hpp"
#include "stream/stream_rewriter.hpp"
#include "vm/departure_pages.hpp"
#include "vm/vm_manager.hpp"

namespace bnf::qemu {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Rewritten stream bytes travel to the destination as STREAM frames.
class FrameSink final : public ByteSink {
 public:
  explicit FrameSink(transport::Connection& c) : c_(c) { buf_.reserve(kChunk); }
  Status write(std::span<const std::byte> src) override {
    buf_.insert(buf_.end(), src.begin(), src.end());
    kept_.insert(kept_.end(), src.begin(), src.end());
    return buf_.size() >= kChunk ? post() : Status::ok();
  }
  Status flush() override {
    BNF_TRY(post());
    return c_.flush();
  }
  Status post() {
    if (buf_.empty()) return Status::ok();
    BNF_TRY(proto::send_control(c_, proto::FrameType::stream, json::object(), buf_));
    forwarded_ += buf_.size();
    buf_.clear();
    return Status::ok();
  }
  [[nodiscard]] uint64_t forwarded() const { return forwarded_; }
  // Everything forwarded: with the RAM file it is a complete stream for QEMU
  // (small RAM blocks, device state), kept as the snapshot's device-state blob.
  [[nodiscard]] std::string_view kept() const {
    return {reinterpret_cast<const char*>(kept_.data()), kept_.size()};
  }

 private:
  static constexpr size_t kChunk = 256U << 10;
  std::vector<std::byte> kept_;
  transport::Connection& c_;
  std::vector<std::byte> buf_;
  uint64_t forwarded_ = 0;
};

Result<UniqueFd> accept_within(int lfd, int timeout_ms) {
  pollfd p{lfd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return Status(Errc::io, "QEMU did not connect to the migration socket");
  int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return errno_status("accept migration stream", errno);
  return UniqueFd(fd);
}

// Memory for pages held back until QEMU's next pass (see departure_pages.hpp):
// an eighth of guest RAM, at most 256 MiB.
size_t hold_budget(uint64_t memory_bytes) { return std::min<uint64_t>(memory_bytes / 8, 256ULL << 20); }

// The connection broke while we sent: a destination that failed on purpose
// (out of space, QEMU died) sent an ERROR frame first, still readable here.
Status peer_reason(transport::Connection& c, Status broke) {
  auto f = proto::expect_frame(c, proto::FrameType::vm_done);
  if (!f.is_ok() && f.status().message().starts_with("peer: "))
    return Status(f.status().code(), "destination failed: " + f.status().message().substr(6));
  return broke;
}

// After a failed trip: the VM must keep running here.
void keep_running_here(QmpClient& qmp, const Logger& log, const std::string& name) {
  auto st = qmp.execute("query-migrate");
  if (st.is_ok() && st->value("status", std::string()) == "active") (void)qmp.execute("migrate_cancel");
  for (int i = 0; i < 50; ++i) {
    auto s = qmp.execute("query-status");
    if (!s.is_ok()) break;
    const std::string state = s->value("status", std::string());
    if (state == "running") return;
    if (state == "postmigrate" || state == "paused" || state == "finish-migrate") (void)qmp.execute("cont");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  log.warn("vm {}: could not confirm it runs again after the failed migration", name);
}

}  // namespace

Result<MigrationReport> VmManager::migrate(const std::string& name, const Endpoint& to,
                                           const std::function<void(const json&)>& progress) {
  const auto t0 = Clock::now();
  std::unique_lock lk(mu_);
  BNF_ASSIGN_OR_RETURN(Vm * vm, find(name));
  if (vm->busy) return Status(Errc::busy, "VM '" + name + "' is being migrated already");
  if (!vm->proc || !vm->proc->running()) return Status(Errc::invalid_argument, "VM '" + name + "' is not running here");
  vm->busy = true;
  lk.unlock();  // status requests and incoming migrations of other VMs go on meanwhile
  BusyGuard busy(mu_, *vm);
  const LaunchPaths lp = paths(name, vm->ram_file);
  BNF_ASSIGN_OR_RETURN(QmpClient qmp, QmpClient::connect(lp.qmp_socket, std::chrono::seconds(5)));

  // Handshake: our arrival record (the image the VM had when it came here).
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<transport::Connection> c, transport_.connect(to));
  json arrival = nullptr;
  auto m = store_.manifest(name);
  if (m.is_ok()) arrival = {{"lineage", m->lineage}, {"epoch", m->epoch}, {"root", digest_hex(m->root)}};
  BNF_TRY(proto::send_control(*c, proto::FrameType::vm_hello,
                              {{"version", proto::kVersion}, {"definition", vm->def.to_json()}, {"arrival", arrival}}));
  BNF_ASSIGN_OR_RETURN(proto::Frame af, proto::expect_frame(*c, proto::FrameType::vm_accept));
  BNF_ASSIGN_OR_RETURN(json a, proto::parse_json_meta(af));
  MigrationReport rep;
  BNF_ASSIGN_OR_RETURN(rep.mode, proto::field<std::string>(a, "mode"));
  BNF_ASSIGN_OR_RETURN(rep.lineage, proto::field<std::string>(a, "lineage"));
  BNF_ASSIGN_OR_RETURN(rep.epoch, proto::field<uint64_t>(a, "epoch"));
  BNF_ASSIGN_OR_RETURN(std::string key_hex, proto::field<std::string>(a, "key"));
  BNF_ASSIGN_OR_RETURN(DigestKey key, digest_key_from_hex(key_hex));
  rep.fallback = a.value("fallback", std::string());
  std::optional<DigestTable> base;
  if (rep.mode == "incremental") {
    if (!m.is_ok() || m->lineage != rep.lineage || m->key != key)
      return Status(Errc::protocol, "destination chose incremental against a base this host cannot prove");
    BNF_ASSIGN_OR_RETURN(base, store_.load_table(*m));
  }

  // QEMU migrates into our socket; we rewrite as it flows.
  const std::string sock = vm_dir(name) + "/migrate.sock";
  BNF_ASSIGN_OR_RETURN(UniqueFd lfd, unix_listen(sock, 1));
  BNF_TRY(qmp.execute("migrate-set-capabilities",
                      {{"capabilities", json::array({{{"capability", "events"}, {"state", true}}})}})
              .status());
  BNF_TRY(qmp.execute("migrate-set-parameters", {{"max-bandwidth", 1ULL << 40}}).status());
  BNF_TRY(qmp.execute("migrate", {{"uri", "unix:" + sock}}).status());
  auto qfd = accept_within(lfd.get(), 10000);
  if (!qfd.is_ok()) {
    keep_running_here(qmp, log_, name);
    return qfd.status();
  }
  const PageDigester h(key);
  const bool incremental = base.has_value();
  const uint64_t pages_total = vm->def.memory_bytes / 4096;
  DeparturePages pages(*c, h, std::move(base), pages_total,
                       {.incremental = incremental, .hold_budget_bytes = hold_budget(vm->def.memory_bytes)});
  FdSource src(qfd->get());
  if (progress)
    pages.on_tick([&, t = Clock::now()](const DeparturePageCounts& n) mutable {
      if (since(t) < 0.5) return;
      t = Clock::now();
      progress({{"seconds", since(t0)}, {"mode", rep.mode}, {"round", n.rounds}, {"pages_total", pages_total},
                {"pages_seen", n.sent + n.skipped + n.zero}, {"pages_sent", n.sent}, {"pages_skipped", n.skipped},
                {"wire_bytes", c->stats().bytes_sent}, {"stream_bytes", src.consumed()}});
    });
  FrameSink sink(*c);
  StreamRewriter rw(src, sink, pages);
  Status st = rw.run();
  if (st.is_ok()) {
    const Digest root = pages.departure().root(h);
    st = proto::send_control(*c, proto::FrameType::vm_end, {{"root", digest_hex(root)}});
    if (st.is_ok()) {
      auto done = proto::expect_frame(*c, proto::FrameType::vm_done);
      st = done.status();
      if (st.is_ok()) {
        auto dj = proto::parse_json_meta(*done);
        if (!dj.is_ok() || dj->value("root", std::string()) != digest_hex(root))
          st = Status(Errc::corrupt, "destination landed a different image (digest roots differ)");
      }
    }
  }
  if (!st.is_ok()) {
    if (st.code() == Errc::connection_lost) st = peer_reason(*c, st);
    keep_running_here(qmp, log_, name);
    return st.context("migration of " + name + " failed, the VM keeps running here");
  }
  // Switched over: the VM runs there. Our RAM file becomes the retained snapshot.
  auto info = qmp.execute("query-migrate");
  if (info.is_ok()) rep.downtime_ms = info->value("downtime", 0.0);
  (void)qmp.execute("quit");
  if (!vm->proc->wait(std::chrono::seconds(10)).is_ok()) vm->proc->kill();
  BNF_ASSIGN_OR_RETURN(Manifest dep, store_.commit_departure(name, vm->ram_file, rep.lineage, rep.epoch, key,
                                                             pages.departure(), to.to_string(), sink.kept()));
  {
    std::lock_guard relock(mu_);
    vm->proc.reset();
    vm->ram_file = store_.image_path(dep);
    vm->where = to.to_string();
    BNF_TRY(save(*vm));
  }
  const auto cs = c->stats();
  rep.pages_total = pages_total;
  rep.pages_sent = pages.counts().sent;
  rep.pages_skipped = pages.counts().skipped;
  rep.pages_zero = pages.counts().zero;
  rep.pages_superseded = pages.counts().superseded;
  rep.wire_bytes = cs.bytes_sent + cs.bytes_received;
  rep.stream_bytes_in = rw.stats().bytes_in;
  rep.stream_bytes_forwarded = sink.forwarded();
  rep.rounds = pages.counts().rounds;
  rep.seconds = since(t0);
  log_.info("vm {}: migrated to {} ({}, {} pages sent, {} skipped)", name, to.to_string(), rep.mode, rep.pages_sent,
            rep.pages_skipped);
  return rep;
}

}  // namespace bnf::qemu
