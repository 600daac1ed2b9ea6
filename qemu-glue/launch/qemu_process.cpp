#include "launch/qemu_process.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>

#include "common/files.hpp"
#include "common/unique_fd.hpp"

namespace bnf::qemu {

namespace {

// In the forked child: only async-signal-safe calls until exec.
[[noreturn]] void exec_child(const std::vector<char*>& args, int log_fd, int ready_fd, bool background) {
  ::dup2(log_fd, STDERR_FILENO);
  const int devnull = ::open("/dev/null", O_RDWR);
  ::dup2(devnull, STDIN_FILENO);
  ::dup2(devnull, STDOUT_FILENO);
  ::setsid();  // not killed with the daemon's terminal
  if (background) (void)::setpriority(PRIO_PROCESS, 0, 19);
  ::execvp(args[0], args.data());
  const int err = errno;
  (void)::write(ready_fd, &err, sizeof err);
  ::_exit(127);
}

}  // namespace

Result<QemuProcess> QemuProcess::spawn(const std::vector<std::string>& argv, const std::string& stderr_log,
                                       bool background) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  UniqueFd log(::open(stderr_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, kPrivateFileMode));
  if (!log.valid()) return errno_status("open " + stderr_log, errno);
  // The child writes exec's errno here; a successful exec closes it (CLOEXEC).
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return errno_status("pipe", errno);
  UniqueFd ready_read(ends[0]);
  UniqueFd ready_write(ends[1]);
  const pid_t pid = ::fork();
  if (pid < 0) return errno_status("fork", errno);
  if (pid == 0) exec_child(args, log.get(), ready_write.get(), background);
  log.reset();
  ready_write.reset();
  int err = 0;
  ssize_t n = 0;
  do {
    n = ::read(ready_read.get(), &err, sizeof err);  // EOF on a successful exec
  } while (n < 0 && errno == EINTR);
  QemuProcess p(pid, true);
  if (n == sizeof err) {
    (void)p.wait(std::chrono::seconds(1));
    return errno_status("start " + argv[0], err);
  }
  return p;
}

Result<QemuProcess> QemuProcess::adopt(pid_t pid, const std::string& marker) {
  std::string cmdline;
  if (pid <= 0 || ::kill(pid, 0) != 0) return Status(Errc::not_found, fmt::format("no process {}", pid));
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  std::getline(in, cmdline, '\x01');  // NUL-separated: read it whole
  if (cmdline.find(marker) == std::string::npos)
    return Status(Errc::not_found, fmt::format("process {} is not this VM's QEMU", pid));
  return QemuProcess(pid, false);
}

QemuProcess::QemuProcess(QemuProcess&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), child_(o.child_), reaped_(std::exchange(o.reaped_, true)) {}

QemuProcess& QemuProcess::operator=(QemuProcess&& o) noexcept {
  if (this != &o) {
    kill();
    pid_ = std::exchange(o.pid_, -1);
    child_ = o.child_;
    reaped_ = std::exchange(o.reaped_, true);
  }
  return *this;
}

QemuProcess::~QemuProcess() { kill(); }

bool QemuProcess::gone() {
  if (pid_ < 0 || reaped_) return true;
  if (child_) {
    int status = 0;
    reaped_ = reap_if_exited(status);
  } else {
    reaped_ = ::kill(pid_, 0) != 0;  // an adopted process is reaped by its own parent
  }
  return reaped_;
}

// Reaps the child only once it has exited: a plain waitpid would also take
// the stops of a thread the daemon traces meanwhile (UffdWriteTracker), which
// are reported to any thread of the tracing process. Gone already (reaped by
// that tracer's wait): status 0.
bool QemuProcess::reap_if_exited(int& status) {
  siginfo_t si{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &si, WEXITED | WNOHANG | WNOWAIT) != 0) return errno == ECHILD;
  const bool exited =
      si.si_pid == pid_ && (si.si_code == CLD_EXITED || si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED);
  if (!exited) return false;  // running, or stopped
  return ::waitpid(pid_, &status, WNOHANG) == pid_ || errno == ECHILD;
}

bool QemuProcess::running() { return !gone(); }

Result<int> QemuProcess::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (!child_) {
      if (gone()) return 0;  // not ours: its exit status went to its parent
    } else {
      int status = 0;
      if (reap_if_exited(status)) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) return Status(Errc::cancelled, "QEMU did not exit in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void QemuProcess::kill() noexcept {
  if (pid_ < 0 || reaped_) return;
  ::kill(pid_, SIGKILL);
  if (child_) {
    int status = 0;
    while (!reap_if_exited(status)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    reaped_ = true;
  } else {
    (void)wait(std::chrono::seconds(5));
  }
}

Status QemuProcess::set_nice(pid_t pid, int nice) {
  // Twice: a thread started while the first walk ran may have copied the old value.
  for (int walk = 0; walk < 2; ++walk) {
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
      const auto tid = static_cast<id_t>(std::stoul(task.path().filename().string()));
      if (::setpriority(PRIO_PROCESS, tid, nice) != 0 && errno != ESRCH)
        return errno_status(fmt::format("set the nice value of QEMU's thread {}", tid), errno);
    }
    if (ec) return errno_status(fmt::format("list QEMU's threads (/proc/{}/task)", pid), ec.value());
  }
  return Status::ok();
}

bool QemuProcess::may_lower_nice() {
  bool may = false;
  std::thread([&] {
    const auto self = static_cast<id_t>(::syscall(SYS_gettid));
    errno = 0;
    const int now = ::getpriority(PRIO_PROCESS, self);
    if (errno != 0 || now >= 19 || ::setpriority(PRIO_PROCESS, self, now + 1) != 0) return;
    may = ::setpriority(PRIO_PROCESS, self, now) == 0;
  }).join();
  return may;
}

}  // namespace bnf::qemu
