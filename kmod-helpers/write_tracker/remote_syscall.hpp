// Runs system calls inside a thread of another process (ptrace), the way a
// checkpointing tool does: the thread stops for the calls and then goes on
// exactly where it was (a system call it was blocked in is restarted). Used
// to create a userfaultfd that belongs to QEMU's address space, which nothing
// else can do from outside. x86-64 only.
#pragma once

#include <sys/user.h>

#include <array>

#include "common/status.hpp"
#include "common/unique_fd.hpp"

namespace bnf {

class RemoteSyscalls {
 public:
  // Stops thread `tid` (PTRACE_SEIZE + PTRACE_INTERRUPT). The caller must be
  // allowed to trace it (same user; Yama's ptrace_scope permitting).
  static Result<RemoteSyscalls> attach(int tid);
  RemoteSyscalls(RemoteSyscalls&& o) noexcept;
  RemoteSyscalls& operator=(RemoteSyscalls&&) = delete;
  RemoteSyscalls(const RemoteSyscalls&) = delete;
  RemoteSyscalls& operator=(const RemoteSyscalls&) = delete;
  // Restores the thread's registers and lets it go on.
  ~RemoteSyscalls();

  // System call `nr` with `args` in the thread; its return value (-errno on failure).
  Result<long> call(long nr, const std::array<long, 6>& args);
  // A copy, in this process, of the thread's descriptor `fd` (pidfd_getfd).
  Result<UniqueFd> copy_fd(int fd) const;

 private:
  explicit RemoteSyscalls(int tid) : tid_(tid) {}
  Status find_syscall_instruction();
  Status step_once();
  void detach() noexcept;

  int tid_ = -1;  // -1: detached (moved from)
  user_regs_struct saved_{};
  unsigned long syscall_at_ = 0;  // address of a `syscall` instruction in the thread's process
  int pending_signal_ = 0;        // arrived while stopped: delivered at detach
};

}  // namespace bnf
