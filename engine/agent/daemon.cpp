#include "agent/daemon.hpp"

#include "protocol/control.hpp"

namespace bnf {

Daemon::Daemon(std::string state_dir, std::unique_ptr<transport::Transport> transport, const proto::PeerKey& key,
               const Logger& log, transport::Protection protection)
    : store_(std::move(state_dir)), transport_(std::move(transport), key, protection), log_(log) {}

Daemon::~Daemon() {
  stop();
  reap(true);
}

Status Daemon::start(const Endpoint& listen) {
  BNF_TRY(store_.open().context("state directory"));
  BNF_ASSIGN_OR_RETURN(listener_, transport_.listen(listen));
  log_.info("listening on {} ({})", listener_->local().to_string(), transport_.name());
  return Status::ok();
}

void Daemon::run() {
  ReceiverContext ctx{store_, sessions_, log_, vm_handler_};
  while (!stopping_) {
    auto conn = listener_->accept();
    if (!conn.is_ok()) {
      if (stopping_) break;
      log_.warn("accept: {}", conn.status().message());
      continue;
    }
    std::lock_guard lk(mu_);
    reap(false);
    Worker& w = workers_.emplace_back();
    w.conn = std::move(conn).value();
    w.thread = std::thread([this, &ctx, &w] {
      serve(w, ctx);
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
  auto keys = proto::authenticate_peer(c, transport_.key(), transport_.protection());
  if (!keys.is_ok()) {
    log_.warn("connection from {} refused: {}", c.peer(), keys.status().message());
    proto::send_error(c, keys.status());
    c.shutdown();
    return;
  }
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
