// QmpClient against a real QEMU 7.2 (skipped where QEMU is not installed).
#include <gtest/gtest.h>

#include <filesystem>

#include "launch/qemu_process.hpp"
#include "qmp/qmp_client.hpp"
#include "test_util.hpp"

namespace bnf::qemu {
namespace {

bool have_qemu() { return std::system("command -v qemu-system-x86_64 >/dev/null 2>&1") == 0; }

TEST(QmpClient, TalksToARealQemu) {
  if (!have_qemu()) GTEST_SKIP() << "qemu-system-x86_64 not installed";
  test::TempDir dir;
  const std::string sock = dir.path() + "/qmp.sock";
  auto qemu = QemuProcess::spawn({"qemu-system-x86_64", "-accel", "tcg", "-m", "32M", "-display", "none",
                                  "-nodefaults", "-S", "-qmp", "unix:" + sock + ",server=on,wait=off"},
                                 dir.path() + "/stderr");
  ASSERT_TRUE(qemu.is_ok()) << qemu.status().message();
  auto c = QmpClient::connect(sock, std::chrono::seconds(10));
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_EQ(c->qemu_version().substr(0, 2), "7.");
  auto st = c->execute("query-status");
  ASSERT_TRUE(st.is_ok()) << st.status().message();
  EXPECT_EQ((*st)["status"], "prelaunch");
  ASSERT_TRUE(c->execute("cont").is_ok());
  auto ev = c->wait_event("RESUME", std::chrono::seconds(10));
  ASSERT_TRUE(ev.is_ok()) << ev.status().message();
  auto bad = c->execute("no-such-command");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("QEMU refused no-such-command"), std::string::npos);
  // Unawaited commands take effect; their answers (even refusals) do not
  // become the answer of the next command.
  ASSERT_TRUE(c->send("migrate-set-parameters", {{"downtime-limit", 1234}}).is_ok());
  ASSERT_TRUE(c->send("no-such-command").is_ok());
  auto params = c->execute("query-migrate-parameters");
  ASSERT_TRUE(params.is_ok()) << params.status().message();
  EXPECT_EQ((*params)["downtime-limit"], 1234);
}

TEST(QmpClient, MissingSocketTimesOutWithAReason) {
  auto c = QmpClient::connect("/nonexistent/qmp.sock", std::chrono::milliseconds(100));
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("/nonexistent/qmp.sock"), std::string::npos);
}

}  // namespace
}  // namespace bnf::qemu
