#include "write_tracker/remote_syscall.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace bnf {

namespace {

constexpr uint16_t kSyscallInsn = 0x050f;  // `syscall` (0f 05), as read little-endian

Status ptrace_status(const char* what, int tid, int err) {
  if (err == EPERM)
    return {Errc::denied, fmt::format("{} thread {}: not allowed to trace it ({}; Yama's ptrace_scope or a "
                                      "container may forbid it)",
                                      what, tid, errno_text(err))};
  return errno_status(fmt::format("{} thread {}", what, tid), err);
}

// Waits for the traced thread's next stop; its wait status.
Result<int> wait_stop(int tid) {
  int st = 0;
  while (::waitpid(tid, &st, __WALL) < 0)
    if (errno != EINTR) return errno_status(fmt::format("wait for thread {}", tid), errno);
  if (!WIFSTOPPED(st)) return Status(Errc::io, fmt::format("thread {} exited while stopped for a system call", tid));
  return st;
}

bool interrupt_stop(int status) { return (status >> 16) == PTRACE_EVENT_STOP; }

bool read_remote(int pid, unsigned long addr, void* out, size_t n) {
  iovec local{out, n};
  iovec remote{reinterpret_cast<void*>(addr), n};  // NOLINT(performance-no-int-to-ptr)
  return ::process_vm_readv(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(n);
}

// A `syscall` instruction in the process's vDSO (its clock fallbacks have some).
Result<unsigned long> syscall_in_vdso(int pid) {
  std::ifstream maps(fmt::format("/proc/{}/maps", pid));
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("[vdso]") == std::string::npos) continue;
    unsigned long lo = 0;
    unsigned long hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) != 2 || hi <= lo) break;  // NOLINT(cert-err34-c)
    std::vector<uint8_t> code(hi - lo);
    if (!read_remote(pid, lo, code.data(), code.size())) break;
    for (size_t i = 0; i + 1 < code.size(); ++i)
      if (code[i] == 0x0f && code[i + 1] == 0x05) return lo + i;
    break;
  }
  return Status(Errc::not_found, fmt::format("no system call instruction found in process {}", pid));
}

}  // namespace

Result<RemoteSyscalls> RemoteSyscalls::attach(int tid) {
  if (::ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0) return ptrace_status("attach to", tid, errno);
  RemoteSyscalls r(tid);  // from here on, the destructor lets the thread go
  if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) return ptrace_status("stop", tid, errno);
  while (true) {
    BNF_ASSIGN_OR_RETURN(int st, wait_stop(tid));
    if (interrupt_stop(st)) break;
    // A signal came first: delivered as it would have been; our stop follows.
    const auto sig = static_cast<long>(WSTOPSIG(st));
    if (::ptrace(PTRACE_CONT, tid, nullptr, reinterpret_cast<void*>(sig)) != 0)  // NOLINT(performance-no-int-to-ptr)
      return ptrace_status("resume", tid, errno);
  }
  if (::ptrace(PTRACE_GETREGS, tid, nullptr, &r.saved_) != 0) return ptrace_status("read registers of", tid, errno);
  BNF_TRY(r.find_syscall_instruction());
  return r;
}

RemoteSyscalls::RemoteSyscalls(RemoteSyscalls&& o) noexcept
    : tid_(std::exchange(o.tid_, -1)),
      saved_(o.saved_),
      syscall_at_(o.syscall_at_),
      pending_signal_(o.pending_signal_) {}

RemoteSyscalls::~RemoteSyscalls() { detach(); }

// Where the thread stopped inside a system call, the instruction just before
// it is one; otherwise the vDSO has some.
Status RemoteSyscalls::find_syscall_instruction() {
  uint16_t before = 0;
  if (saved_.rip >= 2 && read_remote(tid_, saved_.rip - 2, &before, sizeof before) && before == kSyscallInsn) {
    syscall_at_ = saved_.rip - 2;
    return Status::ok();
  }
  BNF_ASSIGN_OR_RETURN(syscall_at_, syscall_in_vdso(tid_));
  return Status::ok();
}

// Executes the one instruction at rip (the `syscall`). A signal that arrives
// meanwhile waits until the thread goes on (one: a second one is an error).
Status RemoteSyscalls::step_once() {
  for (int i = 0; i < 2; ++i) {
    if (::ptrace(PTRACE_SINGLESTEP, tid_, nullptr, nullptr) != 0) return ptrace_status("step", tid_, errno);
    BNF_ASSIGN_OR_RETURN(int st, wait_stop(tid_));
    if (WSTOPSIG(st) == SIGTRAP && !interrupt_stop(st)) return Status::ok();
    if (pending_signal_ != 0) break;
    pending_signal_ = WSTOPSIG(st);
  }
  return {Errc::io, fmt::format("thread {} kept receiving signals while stopped for a system call", tid_)};
}

Result<long> RemoteSyscalls::call(long nr, const std::array<long, 6>& args) {
  user_regs_struct r = saved_;
  r.rip = syscall_at_;
  r.rax = static_cast<unsigned long long>(nr);
  r.orig_rax = static_cast<unsigned long long>(-1);  // not inside a system call: nothing to restart
  r.rdi = static_cast<unsigned long long>(args[0]);
  r.rsi = static_cast<unsigned long long>(args[1]);
  r.rdx = static_cast<unsigned long long>(args[2]);
  r.r10 = static_cast<unsigned long long>(args[3]);
  r.r8 = static_cast<unsigned long long>(args[4]);
  r.r9 = static_cast<unsigned long long>(args[5]);
  if (::ptrace(PTRACE_SETREGS, tid_, nullptr, &r) != 0) return ptrace_status("set registers of", tid_, errno);
  BNF_TRY(step_once());
  if (::ptrace(PTRACE_GETREGS, tid_, nullptr, &r) != 0) return ptrace_status("read registers of", tid_, errno);
  if (r.rip != syscall_at_ + 2)
    return Status(Errc::internal, fmt::format("thread {}: the system call did not run where it was placed", tid_));
  return static_cast<long>(r.rax);
}

Result<UniqueFd> RemoteSyscalls::copy_fd(int fd) const {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, tid_, 0)));
  if (!pidfd.valid()) return errno_status(fmt::format("pidfd_open {}", tid_), errno);
  UniqueFd copy(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
  if (!copy.valid()) return errno_status(fmt::format("copy descriptor {} of process {}", fd, tid_), errno);
  return copy;
}

// The saved registers as they were: a system call the thread was blocked in
// restarts as the kernel restarts any interrupted call.
void RemoteSyscalls::detach() noexcept {
  if (tid_ < 0) return;
  (void)::ptrace(PTRACE_SETREGS, tid_, nullptr, &saved_);
  (void)::ptrace(PTRACE_DETACH, tid_, nullptr, reinterpret_cast<void*>(static_cast<long>(pending_signal_)));  // NOLINT
  tid_ = -1;
}

}  // namespace bnf
