#include "agent/daemon.hpp"

#include <fmt/format.h>

#include "protocol/control.hpp"

namespace bnf {

Daemon::Daemon(std::string state_dir, std::unique_ptr<transport::Transport> transport, const proto::PeerKey& key,
               const Logger& log, DaemonLimits limits, transport::Protection protection)
    : store_(std::move(state_dir)),
      transport_(std::move(transport), key, protection),
      log_(log),
      limits_(limits),
      pre_auth_(limits.pre_auth) {}

Daemon::~Daemon() {
  stop();
  reap(true);
}

Status Daemon::start(const Endpoint& listen) {
  BNF_TRY(store_.open().context("state directory"));
  prove_retained();
  BNF_ASSIGN_OR_RETURN(listener_, transport_.listen(listen));
  log_.info("listening on {} ({})", listener_->local().to_string(), transport_.name());
  return Status::ok();
}

// Every retained snapshot is proven against its table in the background, so
// that a VM coming back lands on it without a proof in its downtime.
void Daemon::prove_retained() {
  auto all = store_.list();
  if (!all.is_ok()) return;
  for (const Manifest& m : *all) {
    if (store_.is_live(m.name)) continue;
    if (Status st = store_.prove_ahead(m.name); !st.is_ok())
      log_.warn("snapshot {}: not proven ahead, its next arrival proves it: {}", m.name, st.message());
  }
}

void Daemon::run() {
  ReceiverContext ctx{store_, sessions_, log_, vm_handler_, limits_.peer_timeout};
  while (!stopping_) {
    auto conn = listener_->accept();
    if (!conn.is_ok()) {
      if (stopping_) break;
      log_.warn("accept: {}", conn.status().message());
      continue;
    }
    // Over the caps: closed here, before a thread is spent on it.
    PreAuthGate::Admission admitted = pre_auth_.admit(source_address((*conn)->peer()));
    if (!admitted.ticket) {
      note_refused((*conn)->peer(), admitted.refused_because);
      continue;
    }
    std::lock_guard lk(mu_);
    reap(false);
    Worker& w = workers_.emplace_back();
    w.conn = std::move(conn).value();
    w.pre_auth = std::move(*admitted.ticket);
    w.thread = std::thread([this, &ctx, &w] {
      serve_guarded(w, ctx);
      w.pre_auth.release();  // a refused connection's place is free at once, not when it is reaped
      std::lock_guard wlk(mu_);
      w.conn.reset();  // close now: a peer still sending gets a reset instead of a full window
      w.finished = true;
    });
  }
  {
    std::lock_guard lk(mu_);
    for (Worker& w : workers_)
      if (w.conn) w.conn->shutdown();
  }
  reap(true);  // no new workers any more; joining needs no lock (workers take it to finish)
  log_.info("stopped");
}

void Daemon::serve(Worker& w, ReceiverContext& ctx) {
  transport::Connection& c = *w.conn;
  c.limit_receives(handshake_limits());
  auto keys = proto::authenticate_peer(c, transport_.key(), transport_.protection());
  if (!keys.is_ok()) {
    log_.warn("connection from {} refused: {}", c.peer(), keys.status().message());
    proto::send_error(c, keys.status());
    c.shutdown();
    return;
  }
  w.pre_auth.release();  // authenticated: it no longer counts against the caps
  c.limit_receives({.idle = limits_.peer_timeout});
  {
    // Every frame from here on goes through the secure channel; stop() may
    // shut the connection down meanwhile, so the swap holds its lock.
    std::lock_guard lk(mu_);
    const std::string peer = c.peer();
    auto secure = transport::SecureConnection::over(std::move(w.conn), *keys);
    if (!secure.is_ok()) {
      log_.warn("connection from {}: {}", peer, secure.status().message());
      return;
    }
    w.conn = std::move(*secure);
  }
  serve_connection(*w.conn, ctx);
}

// Nothing a peer sends may end the daemon: what escaped as an exception (an
// allocation refused, a library's throw) ends this connection only; the
// writer's destructor rolls an open transfer back.
void Daemon::serve_guarded(Worker& w, ReceiverContext& ctx) noexcept {
  try {
    serve(w, ctx);
  } catch (const std::exception& e) {
    std::lock_guard lk(mu_);
    if (!w.conn) return;
    log_.error("connection from {}: internal error: {}", w.conn->peer(), e.what());
    w.conn->shutdown();
  }
}

transport::ReceiveLimits Daemon::handshake_limits() const {
  transport::ReceiveLimits l;
  l.deadline = std::chrono::steady_clock::now() + limits_.handshake_deadline;
  l.deadline_passed = fmt::format("the peer did not authenticate within {} s",
                                  std::chrono::duration<double>(limits_.handshake_deadline).count());
  return l;
}

// One line a second at most: a flood over the caps must not flood the log too.
void Daemon::note_refused(const std::string& peer, const std::string& why) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_refusal_log_ < std::chrono::seconds(1)) {
    ++refusals_unlogged_;
    return;
  }
  const std::string more =
      refusals_unlogged_ == 0 ? "" : fmt::format(" ({} more closed so since the last such line)", refusals_unlogged_);
  log_.warn("connection from {} closed at once: {}{}", peer, why, more);
  last_refusal_log_ = now;
  refusals_unlogged_ = 0;
}

// Joins finished workers (all of them when `all`). Caller holds mu_ or is the last user.
void Daemon::reap(bool all) {
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (all || it->finished) {
      if (it->thread.joinable()) it->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
}

void Daemon::stop() noexcept {
  if (stopping_.exchange(true)) return;
  if (listener_) listener_->shutdown();
}

}  // namespace bnf
