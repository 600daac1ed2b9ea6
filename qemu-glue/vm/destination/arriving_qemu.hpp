// Our QEMU for an arriving VM, started as the trip begins.
#pragma once

#include <sys/resource.h>

#include <future>
#include <optional>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "common/unique_fd.hpp"
#include "common/unix_socket.hpp"
#include "launch/qemu_process.hpp"
#include "launch/vm_definition.hpp"
#include "qmp/qmp_client.hpp"

namespace bnf::qemu {

// Our QEMU for an arriving VM. It starts on a thread of its own: a direct
// trip's stream is being read meanwhile (unread, it would hold the source
// QEMU back). In a direct trip it starts in the background (lowest CPU
// priority) and gets ours back once it listens: its start-up (~0.1 s of CPU)
// otherwise takes a core from the source's pass wherever the two share a
// machine or a busy host (measured: a 1 GiB first trip over 1 Gbit/s ~15 ms
// shorter with it started 2 s late).
class ArrivingQemu {
 public:
  ArrivingQemu(std::vector<std::string> argv, const std::string& log_file, LaunchPaths lp, std::string incoming,
               bool background, const Logger& log, std::string name)
      : lp_(std::move(lp)),
        incoming_(std::move(incoming)),
        background_(background),
        normal_nice_(::getpriority(PRIO_PROCESS, 0)),
        log_(log),
        name_(std::move(name)) {
    spawning_ = std::async(std::launch::async, [argv = std::move(argv), log_file, background] {
      return QemuProcess::spawn(argv, log_file, background);
    });
  }

  // Shared mode: QEMU was started with `-incoming defer`; it gets
  // x-ignore-shared, then listens (`migrate-incoming`), before connect()
  // returns. The capability must be set before the stream's configuration
  // section arrives, which checks it.
  void ignore_shared() { ignore_shared_ = true; }

  // QMP and the incoming-migration socket, once QEMU listens; the socket's fd.
  Result<int> connect() {
    BNF_TRY(connect_once().context("destination QEMU (did it exit? see its qemu.log)"));
    if (Status st = background_ ? QemuProcess::set_nice(proc_->pid(), normal_nice_) : Status::ok(); !st.is_ok())
      log_.warn("vm {}: the arriving QEMU stays at the lowest CPU priority: {}", name_, st.message());
    return qemu_in_.get();
  }
  [[nodiscard]] QmpClient* qmp() { return qmp_ ? &*qmp_ : nullptr; }
  [[nodiscard]] QemuProcess take_process() { return std::move(*proc_); }
  [[nodiscard]] int pid() const { return proc_ ? proc_->pid() : 0; }

 private:
  Status connect_once() {
    if (!proc_) {
      BNF_ASSIGN_OR_RETURN(QemuProcess p, spawning_.get());
      proc_.emplace(std::move(p));
    }
    BNF_ASSIGN_OR_RETURN(qmp_, QmpClient::connect(lp_.qmp_socket, std::chrono::seconds(10)));
    if (ignore_shared_) BNF_TRY(listen_ignoring_shared());
    BNF_ASSIGN_OR_RETURN(qemu_in_, unix_connect(incoming_, std::chrono::seconds(10)));
    return Status::ok();
  }

  Status listen_ignoring_shared() {
    const nlohmann::json caps = nlohmann::json::array({{{"capability", "x-ignore-shared"}, {"state", true}}});
    BNF_TRY(qmp_->execute("migrate-set-capabilities", {{"capabilities", caps}}).status());
    return qmp_->execute("migrate-incoming", {{"uri", "unix:" + incoming_}}).status();
  }

  LaunchPaths lp_;
  std::string incoming_;
  bool ignore_shared_ = false;
  bool background_;
  int normal_nice_;
  const Logger& log_;
  std::string name_;
  std::future<Result<QemuProcess>> spawning_;
  std::optional<QemuProcess> proc_;
  std::optional<QmpClient> qmp_;
  UniqueFd qemu_in_;
};

}  // namespace bnf::qemu
