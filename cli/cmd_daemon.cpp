#include <sys/stat.h>

#include <csignal>
#include <thread>

#include "agent/control_server.hpp"
#include "agent/daemon.hpp"
#include "agent/state_dir.hpp"
#include "commands.hpp"
#include "numa_placement.hpp"
#include "transport/uring_tcp/uring_tcp.hpp"
#include "vm/registry/control_ops.hpp"

namespace bnf::cli {

namespace {

struct DaemonArgs {
  std::string state_dir;
  std::string control;
  std::string listen = "bnf+tcp:127.0.0.1:7070";
  std::string log_level = "info";
  int numa_node = -1;
  std::string zero_copy = "auto";
  std::string encryption = "on";
  double peer_timeout_s = 30;
  std::string peer_key;
  std::string control_group;
  std::vector<std::string> allowed_qemu_args;
};

LogLevel parse_level(const std::string& s) {
  if (s == "debug") return LogLevel::debug;
  if (s == "warn") return LogLevel::warn;
  if (s == "error") return LogLevel::error;
  return LogLevel::info;
}

int run_daemon(const DaemonArgs& a) {
  auto ep = parse_endpoint(a.listen);
  if (!ep.is_ok()) return fail(ep.status().message());
  if (Status s = prefer_node(a.numa_node); !s.is_ok()) return fail(s.message());
  // SIGTERM/SIGINT are taken synchronously by a waiter thread: no handler state.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  const Logger log(parse_level(a.log_level), "bnf-daemon");
  auto access = ControlAccess::with_group(a.control_group);
  if (!access.is_ok()) return fail(access.status().message());
  auto qemu_args = qemu::QemuArgPolicy::allowing(a.allowed_qemu_args);
  if (!qemu_args.is_ok()) return fail(qemu_args.status().message());
  // What QEMU creates for the VMs (serial logs, QMP sockets) is private too.
  ::umask(077);
  if (Status s = prepare_state_dir(a.state_dir, access->group(), log); !s.is_ok())
    return fail(s.context("state directory").message());
  transport::UringTcpOptions topts;
  auto zero_copy = transport::parse_zero_copy(a.zero_copy);
  if (!zero_copy.is_ok()) return fail(zero_copy.status().message());
  topts.zero_copy = *zero_copy;
  topts.peer_timeout_ms = static_cast<unsigned>(a.peer_timeout_s * 1000);
  const std::string key_path = a.peer_key.empty() ? a.state_dir + "/peer.key" : a.peer_key;
  auto key = proto::PeerKey::load_or_create(key_path);
  if (!key.is_ok()) return fail(key.status().message());
  log.info("peer key {} (hosts that migrate to or from this one need the same file)", key_path);
  const auto protection = *parse_choice(kEncryptions, "--encryption", a.encryption);  // checked at parse time
  DaemonLimits limits;
  limits.peer_timeout = std::chrono::milliseconds(topts.peer_timeout_ms);
  Daemon d(a.state_dir, transport::make_uring_tcp_transport(topts), *key, log, limits, protection);
  if (Status s = d.start(*ep); !s.is_ok()) return fail(s.message());
  for (const std::string& o : qemu_args->allowed_as_whole())
    log.warn("QEMU option {} is allowed with any value (--allow-qemu-arg)", o);
  qemu::VmManager vms(a.state_dir, d.store(), d.transport(), log, topts.peer_timeout_ms, *qemu_args);
  d.set_vm_handler([&vms](transport::Connection& c, const proto::Frame& f) { return vms.serve_incoming(c, f); });
  ControlServer control(
      a.control.empty() ? a.state_dir + "/control.sock" : a.control, *access,
      [&vms](const nlohmann::json& req, const ProgressFn& progress) {
        return qemu::handle_control(vms, req, progress);
      },
      log);
  if (Status s = control.start(); !s.is_ok()) return fail(s.message());
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    log.info("signal {}: shutting down", sig);
    d.stop();
  });
  d.run();
  // run() returns only after stop(); make sure the waiter is released too.
  // The waiter sits in sigwait for SIGTERM: this wakes it, it kills nothing.
  pthread_kill(waiter.native_handle(), SIGTERM);  // NOLINT(bugprone-bad-signal-to-kill-thread)
  waiter.join();
  return 0;
}

}  // namespace

void add_daemon_command(CLI::App& app, int& rc) {
  auto args = std::make_shared<DaemonArgs>();
  CLI::App* cmd = app.add_subcommand("daemon", "run the per-host agent that keeps retained snapshots");
  cmd->add_option("--state-dir", args->state_dir, "directory of the snapshot store")->required();
  cmd->add_option("--listen", args->listen, "endpoint, bnf+tcp:HOST:PORT")->capture_default_str();
  cmd->add_option("--control", args->control, "control socket (default: STATE_DIR/control.sock)");
  cmd->add_option("--control-group", args->control_group,
                  "group whose members may use the control socket too (mode 0660; that is root access)");
  cmd->add_option("--allow-qemu-arg", args->allowed_qemu_args,
                  "let VMs use this QEMU option with any value (repeatable; see docs/operations.md)");
  cmd->add_option("--log-level", args->log_level, "error|warn|info|debug")->capture_default_str();
  cmd->add_option("--numa-node", args->numa_node, "run transfer threads on this NUMA node");
  // Refused at parse time by the engine's own list of modes, whose error names the value.
  cmd->add_option("--zero-copy", args->zero_copy, "SEND_ZC: auto (not to loopback peers), on, off")
      ->check([](const std::string& s) { return transport::parse_zero_copy(s).status().message(); }, "")
      ->capture_default_str();
  cmd->add_option("--encryption", args->encryption,
                  "on: every connection is encrypted (AES-256-GCM); off: only authenticated, where the peer is "
                  "off too (a trusted migration network)")
      ->check(CLI::IsMember(choice_names(kEncryptions)))
      ->capture_default_str();
  cmd->add_option("--peer-timeout", args->peer_timeout_s,
                  "seconds a peer may stay silent (no answer, no byte it owes) before it counts as gone")
      ->check(CLI::Range(3.0, 3600.0))
      ->capture_default_str();
  cmd->add_option("--peer-key", args->peer_key,
                  "secret every connection proves, both ways (default: STATE_DIR/peer.key, created if missing; "
                  "copy it to every host this one migrates with)");
  cmd->callback([args, &rc] { rc = run_daemon(*args); });
}

}  // namespace bnf::cli
