// A QEMU process the daemon owns: spawned from a command line (a child), or
// adopted after a daemon restart (found by pid, checked by its command line).
// Killed when the owner lets go, unless detached on purpose: a daemon that
// stops leaves its VMs running, and the next daemon adopts them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/status.hpp"

namespace bnf::qemu {

class QemuProcess {
 public:
  // `background`: at the lowest CPU priority (nice 19, which every thread it
  // makes inherits) until set_nice gives it the spawner's back.
  static Result<QemuProcess> spawn(const std::vector<std::string>& argv, const std::string& stderr_log,
                                   bool background = false);
  // The running process `pid`, if its command line contains `marker` (the VM's
  // RAM file): a recycled pid is not mistaken for the VM.
  static Result<QemuProcess> adopt(pid_t pid, const std::string& marker);
  QemuProcess(QemuProcess&& o) noexcept;
  QemuProcess& operator=(QemuProcess&& o) noexcept;
  QemuProcess(const QemuProcess&) = delete;
  QemuProcess& operator=(const QemuProcess&) = delete;
  ~QemuProcess();

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] bool running();
  // Waits for exit up to `timeout`; returns the exit status (or -signal).
  Result<int> wait(std::chrono::milliseconds timeout);
  void kill() noexcept;
  // Sets the nice value of every thread of process `pid` (Linux keeps one per
  // thread). Lowering it needs CAP_SYS_NICE or RLIMIT_NICE: may_lower_nice().
  static Status set_nice(pid_t pid, int nice);
  // Whether this process may lower a nice value it raised (probed on a
  // thread of its own, which raises its own and lowers it back).
  static bool may_lower_nice();
  // Lets go without killing: the process outlives this object.
  void detach() noexcept { pid_ = -1; }

 private:
  QemuProcess(pid_t pid, bool child) : pid_(pid), child_(child) {}
  bool gone();  // non-blocking: has the process exited?
  bool reap_if_exited(int& status);
  pid_t pid_ = -1;
  bool child_ = true;  // ours to reap with waitpid; an adopted one is polled
  bool reaped_ = false;
};

}  // namespace bnf::qemu
