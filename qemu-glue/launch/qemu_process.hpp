// A QEMU process the daemon owns: spawned from a command line, killed when the
// owner lets go unless it was detached on purpose.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/status.hpp"

namespace bnf::qemu {

class QemuProcess {
 public:
  static Result<QemuProcess> spawn(const std::vector<std::string>& argv, const std::string& stderr_log);
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

 private:
  explicit QemuProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
  bool reaped_ = false;
};

}  // namespace bnf::qemu
