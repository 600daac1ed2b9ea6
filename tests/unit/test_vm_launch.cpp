// VM definitions and launch conventions; the launch itself against real QEMU.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/size.hpp"
#include "launch/qemu_process.hpp"
#include "launch/vm_definition.hpp"
#include "qmp/qmp_client.hpp"
#include "test_util.hpp"

namespace bnf::qemu {
namespace {

VmDefinition small_vm() {
  VmDefinition d;
  d.name = "t1";
  d.memory_bytes = 32U << 20;
  return d;
}

TEST(VmDefinition, ValidatesNameMemoryAndAccel) {
  EXPECT_TRUE(small_vm().validate().is_ok());
  VmDefinition d = small_vm();
  d.name = "a/b";
  EXPECT_FALSE(d.validate().is_ok());
  d = small_vm();
  d.memory_bytes = 3U << 20;
  EXPECT_NE(d.validate().message().find("2 MiB"), std::string::npos);
  d = small_vm();
  d.accel = "xen";
  EXPECT_FALSE(d.validate().is_ok());
}

TEST(VmDefinition, JsonRoundTrip) {
  VmDefinition d = small_vm();
  d.extra_args = {"-kernel", "/boot/vmlinuz"};
  auto back = VmDefinition::from_json(d.to_json());
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back->name, d.name);
  EXPECT_EQ(back->memory_bytes, d.memory_bytes);
  EXPECT_EQ(back->extra_args, d.extra_args);
  EXPECT_FALSE(VmDefinition::from_json({{"name", "x"}}).is_ok());
}

TEST(MemorySize, ParsesUnits) {
  EXPECT_EQ(*parse_size("1G"), 1ULL << 30);
  EXPECT_EQ(*parse_size("512M"), 512ULL << 20);
  EXPECT_EQ(*parse_size("4096"), 4096ULL);
  EXPECT_FALSE(parse_size("12Q").is_ok());
  EXPECT_FALSE(parse_size("G").is_ok());
}

TEST(QemuCommand, CarriesTheConventions) {
  LaunchPaths p{"/dev/shm/x.ram", "/run/x.qmp", "/run/x.serial"};
  auto argv = qemu_command(small_vm(), p, std::string("unix:/run/x.in"));
  std::string all;
  for (const auto& a : argv) all += a + " ";
  EXPECT_NE(all.find("memory-backend-file,id=ram0,size=33554432,mem-path=/dev/shm/x.ram,share=on"), std::string::npos);
  EXPECT_NE(all.find("-incoming unix:/run/x.in"), std::string::npos);
  EXPECT_NE(all.find("unix:/run/x.qmp,server=on,wait=off"), std::string::npos);
}

// The guest's RAM is the file: firmware writes done by the running guest show
// up in the file bnf handed to QEMU.
TEST(QemuLaunch, GuestRamIsTheSharedFile) {
  if (!test::have_qemu()) GTEST_SKIP() << "qemu-system-x86_64 not installed";
  test::TempDir dir;
  LaunchPaths p{dir.path() + "/ram", dir.path() + "/qmp", dir.path() + "/serial"};
  {
    std::ofstream f(p.ram_file, std::ios::binary);
    const std::string fill(32U << 20, '\xAA');
    f.write(fill.data(), static_cast<std::streamsize>(fill.size()));
  }
  auto proc = QemuProcess::spawn(qemu_command(small_vm(), p, std::nullopt), dir.path() + "/stderr");
  ASSERT_TRUE(proc.is_ok()) << proc.status().message();
  auto qmp = QmpClient::connect(p.qmp_socket, std::chrono::seconds(10));
  ASSERT_TRUE(qmp.is_ok()) << qmp.status().message();
  EXPECT_EQ((*qmp->execute("query-status"))["status"], "running");
  bool changed = false;
  for (int i = 0; i < 100 && !changed; ++i) {  // firmware fills the interrupt vector table early
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto low = test::read_whole(p.ram_file);
    for (size_t b = 0; b < 1024 && !changed; ++b) changed = low[b] != std::byte{0xAA};
  }
  EXPECT_TRUE(changed) << "the guest did not write to the RAM file";
  ASSERT_TRUE(qmp->execute("quit").is_ok());
  auto rc = proc->wait(std::chrono::seconds(10));
  ASSERT_TRUE(rc.is_ok());
  EXPECT_EQ(*rc, 0);
}

TEST(QemuLaunch, IncomingWaitsForAStream) {
  if (!test::have_qemu()) GTEST_SKIP() << "qemu-system-x86_64 not installed";
  test::TempDir dir;
  LaunchPaths p{dir.path() + "/ram", dir.path() + "/qmp", dir.path() + "/serial"};
  auto proc = QemuProcess::spawn(qemu_command(small_vm(), p, std::string("unix:" + dir.path() + "/in")),
                                 dir.path() + "/stderr");
  ASSERT_TRUE(proc.is_ok());
  auto qmp = QmpClient::connect(p.qmp_socket, std::chrono::seconds(10));
  ASSERT_TRUE(qmp.is_ok()) << qmp.status().message();
  EXPECT_EQ((*qmp->execute("query-status"))["status"], "inmigrate");
  proc->kill();
  EXPECT_FALSE(proc->running());
}

// The nice value of each thread of `pid` (Linux keeps one per thread).
std::vector<int> thread_nice(pid_t pid) {
  std::vector<int> out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    errno = 0;
    const int n = ::getpriority(PRIO_PROCESS, static_cast<id_t>(std::stoul(task.path().filename().string())));
    if (errno == 0) out.push_back(n);
  }
  return out;
}

// An arriving VM's QEMU starts in the background: every thread it makes (the
// vCPU's, the RCU one...) at nice 19, until set_nice gives them the daemon's.
TEST(QemuLaunch, InTheBackgroundEveryThreadIsNicedUntilGivenItsPriorityBack) {
  if (!test::have_qemu()) GTEST_SKIP() << "qemu-system-x86_64 not installed";
  test::TempDir dir;
  const std::string sock = dir.path() + "/qmp.sock";
  auto qemu = QemuProcess::spawn(test::bare_qemu(sock), dir.path() + "/stderr", true);
  ASSERT_TRUE(qemu.is_ok()) << qemu.status().message();
  ASSERT_TRUE(QmpClient::connect(sock, std::chrono::seconds(10)).is_ok());  // its threads are up
  const std::vector<int> before = thread_nice(qemu->pid());
  ASSERT_GT(before.size(), 1U);
  for (int n : before) EXPECT_EQ(n, 19);
  if (!QemuProcess::may_lower_nice()) GTEST_SKIP() << "this process may not lower a nice value";
  const int mine = ::getpriority(PRIO_PROCESS, 0);
  ASSERT_TRUE(QemuProcess::set_nice(qemu->pid(), mine).is_ok());
  for (int n : thread_nice(qemu->pid())) EXPECT_EQ(n, mine);
  EXPECT_FALSE(QemuProcess::set_nice(999999999, 0).is_ok());  // no such process: named, not ignored
}

TEST(QemuLaunch, MissingBinaryIsNamed) {
  auto proc = QemuProcess::spawn({"/nonexistent/qemu"}, "/dev/null");
  ASSERT_FALSE(proc.is_ok());
  EXPECT_NE(proc.status().message().find("/nonexistent/qemu"), std::string::npos);
}

}  // namespace
}  // namespace bnf::qemu
