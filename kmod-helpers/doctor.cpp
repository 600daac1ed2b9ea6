#include "doctor.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <liburing.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

#include "common/page.hpp"
#include "common/unique_fd.hpp"
#include "numa_placement.hpp"
#include "write_tracker/uffd_write_tracker.hpp"

namespace bnf {

namespace fs = std::filesystem;

namespace {

Check io_uring_check() {
  Check c{"io_uring", false, ""};
  io_uring ring{};
  int rc = io_uring_queue_init(8, &ring, 0);
  if (rc < 0) {
    c.detail = fmt::format("io_uring_queue_init failed: {}", errno_text(-rc));
    return c;
  }
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  auto has = [&](int op) { return probe != nullptr && io_uring_opcode_supported(probe, op) != 0; };
  c.ok = probe != nullptr && has(IORING_OP_SENDMSG) && has(IORING_OP_RECVMSG);
  c.detail = fmt::format("SENDMSG {} RECVMSG {} SEND_ZC {} SENDMSG_ZC {}", has(IORING_OP_SENDMSG) ? "yes" : "no",
                         has(IORING_OP_RECVMSG) ? "yes" : "no", has(IORING_OP_SEND_ZC) ? "yes" : "no",
                         has(IORING_OP_SENDMSG_ZC) ? "yes" : "no");
  if (probe != nullptr) io_uring_free_probe(probe);
  io_uring_queue_exit(&ring);
  return c;
}

Check send_zc_check() {
  Check c{"io_uring SEND_ZC", false, ""};
  io_uring ring{};
  if (io_uring_queue_init(8, &ring, 0) < 0) return c;
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  c.ok = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_SENDMSG_ZC) != 0;
  c.detail = c.ok ? "zero-copy sends from registered memory" : "not supported: plain sends are used";
  if (probe != nullptr) io_uring_free_probe(probe);
  io_uring_queue_exit(&ring);
  return c;
}

Check uffd_wp_check() {
  Check c{"userfaultfd write-protect", false, ""};
  UniqueFd fd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
  if (!fd.valid()) {
    c.detail = fmt::format("userfaultfd unavailable: {}", errno_text(errno));
    return c;
  }
  uffdio_api api{UFFD_API, UFFD_FEATURE_PAGEFAULT_FLAG_WP, 0};
  if (::ioctl(fd.get(), UFFDIO_API, &api) != 0) {
    c.detail = fmt::format("UFFDIO_API with WP failed: {}", errno_text(errno));
    return c;
  }
  c.ok = true;
  c.detail = "available";
  return c;
}

// The real tracker on a child process that maps a tmpfs page, as QEMU maps
// RAM, armed over every page and taken once, as shared mode's rounds do.
Status tracker_probe() {
  UniqueFd file(::memfd_create("bnf-doctor", MFD_CLOEXEC));
  int ready[2];
  if (!file.valid() || ::ftruncate(file.get(), kPageSize) != 0 || ::pipe2(ready, O_CLOEXEC) != 0)
    return {Errc::io, fmt::format("cannot set up the probe: {}", errno_text(errno))};
  const pid_t child = ::fork();
  if (child == 0) {
    void* m = ::mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, file.get(), 0);
    if (m != MAP_FAILED) static_cast<volatile char*>(m)[0] = 1;
    (void)::write(ready[1], "r", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char r = 0;
  const bool mapped = child > 0 && ::read(ready[0], &r, 1) == 1;
  ::close(ready[0]);
  auto tracker = mapped ? UffdWriteTracker::start(child, file.get(), 1, UffdWriteTracker::Coverage::whole)
                        : Result<std::unique_ptr<UffdWriteTracker>>(Status(Errc::io, "the probe process failed"));
  Status st = tracker.status();
  if (st.is_ok()) st = (*tracker)->take_changed().status();
  if (child > 0) {
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
  }
  return st;
}

// What a departure's switchover check needs to hash ahead of the stop.
Check write_tracking_check(const Status& probe) {
  if (probe.is_ok())
    return {"QEMU write tracking", true,
            "userfaultfd async write-protect + PAGEMAP_SCAN through ptrace: the switchover check hashes ahead of the "
            "stop"};
  return {"QEMU write tracking", false, probe.message() + " (the switchover check hashes all RAM in the downtime)"};
}

// Shared mode (`bnf vm migrate --mode shared|auto`): bnf's rounds read what
// the guest wrote from the same tracker.
Check shared_mode_check(const Status& probe) {
  if (probe.is_ok())
    return {"shared mode", true,
            "bnf can move guest RAM itself in rounds of written pages (QEMU 7.2 x-ignore-shared for the rest)"};
  return {"shared mode", false, probe.message() + " (--mode auto migrates in stream mode)"};
}

// Soft-dirty works when clearing the bits and writing a page sets bit 55 again.
Check soft_dirty_check() {
  Check c{"soft-dirty pagemap", false, "CONFIG_MEM_SOFT_DIRTY off or clear_refs not writable"};
  const long page = ::sysconf(_SC_PAGESIZE);
  void* p = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return c;
  static_cast<volatile char*>(p)[0] = 1;
  {
    std::ofstream clear("/proc/self/clear_refs");
    clear << "4";
  }
  static_cast<volatile char*>(p)[0] = 2;
  UniqueFd pm(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  uint64_t entry = 0;
  const auto off = static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / static_cast<uintptr_t>(page) * 8);
  if (pm.valid() && ::pread(pm.get(), &entry, 8, off) == 8 && ((entry >> 55) & 1U) != 0) {
    // Bit set right after a write proves little on its own; clear again and expect it gone.
    std::ofstream clear("/proc/self/clear_refs");
    clear << "4";
    clear.close();
    uint64_t after = 0;
    if (::pread(pm.get(), &after, 8, off) == 8 && ((after >> 55) & 1U) == 0) {
      c.ok = true;
      c.detail = "available";
    }
  }
  ::munmap(p, page);
  return c;
}

std::string read_line(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

Check hugepages_check() {
  Check c{"hugepages (2 MiB)", false, ""};
  const std::string total = read_line("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");
  const std::string free = read_line("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
  if (total.empty()) {
    c.detail = "no 2 MiB hugepage pool";
    return c;
  }
  c.ok = true;
  c.detail = fmt::format("{} reserved, {} free (/proc/sys/vm/nr_hugepages)", total, free);
  return c;
}

Check numa_check() {
  NumaInfo i = numa_info();
  return {"NUMA (libnuma)", i.available, i.available ? fmt::format("{} node(s)", i.nodes) : "not available"};
}

Check rdma_check() {
  Check c{"RDMA devices", false, "none in /sys/class/infiniband"};
  std::error_code ec;
  std::string names;
  for (const auto& e : fs::directory_iterator("/sys/class/infiniband", ec))
    names += (names.empty() ? "" : ", ") + e.path().filename().string();
  if (!names.empty()) {
    c.ok = true;
    c.detail = names;
  }
  return c;
}

Check dpdk_check() {
#ifdef BNF_HAVE_DPDK
  return {"DPDK", true, "built with DPDK"};
#else
  return {"DPDK", false, "this build has no DPDK transport (meson -Ddpdk=enabled)"};
#endif
}

Check kvm_check() {
  const bool ok = ::access("/dev/kvm", R_OK | W_OK) == 0;
  return {"KVM", ok, ok ? "/dev/kvm accessible" : "/dev/kvm not accessible: QEMU runs with TCG"};
}

Check shm_check() {
  struct statvfs s {};
  if (::statvfs("/dev/shm", &s) != 0) return {"tmpfs /dev/shm", false, "missing"};
  const double free_gib = static_cast<double>(s.f_bavail) * static_cast<double>(s.f_frsize) / (1U << 30);
  return {"tmpfs /dev/shm", true, fmt::format("{:.1f} GiB free", free_gib)};
}

}  // namespace

std::vector<Check> run_doctor() {
  const Status probe = tracker_probe();
  return {io_uring_check(),
          send_zc_check(),
          uffd_wp_check(),
          write_tracking_check(probe),
          shared_mode_check(probe),
          soft_dirty_check(),
          hugepages_check(),
          numa_check(),
          rdma_check(),
          dpdk_check(),
          kvm_check(),
          shm_check()};
}

nlohmann::json doctor_json(const std::vector<Check>& checks) {
  nlohmann::json j = nlohmann::json::object();
  for (const Check& c : checks) j[c.name] = {{"ok", c.ok}, {"detail", c.detail}};
  return j;
}

std::string doctor_text(const std::vector<Check>& checks) {
  std::string s;
  for (const Check& c : checks) s += fmt::format("{:<28} {:<4} {}\n", c.name, c.ok ? "yes" : "no", c.detail);
  return s;
}

}  // namespace bnf
