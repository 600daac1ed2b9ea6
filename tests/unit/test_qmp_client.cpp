// QmpClient against a real QEMU 7.2 (skipped where QEMU is not installed).
#include <gtest/gtest.h>

#include <filesystem>

#include "launch/qemu_process.hpp"
#include "qmp/qmp_client.hpp"
#include "test_util.hpp"

namespace bnf::qemu {
namespace {

TEST(QmpClient, TalksToARealQemu) {
  if (!test::have_qemu()) GTEST_SKIP() << "qemu-system-x86_64 not installed";
  test::TempDir dir;
  const std::string sock = dir.path() + "/qmp.sock";
  auto qemu = QemuProcess::spawn(test::bare_qemu(sock), dir.path() + "/stderr");
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
  // A command given up on for an event: the event stays for wait_event, and
  // the late answer is not taken for the next command's.
  ASSERT_TRUE(c->send("stop").is_ok());
  auto status = c->execute_unless_event("query-status", nullptr, "STOP");
  ASSERT_TRUE(status.is_ok()) << status.status().message();
  EXPECT_FALSE(status->has_value());  // QEMU sends STOP before answering the later query
  ASSERT_TRUE(c->wait_event("STOP", std::chrono::seconds(1)).is_ok());
  auto name = c->execute("query-name");
  ASSERT_TRUE(name.is_ok()) << name.status().message();
  EXPECT_FALSE(name->contains("status"));  // query-name's own answer, not query-status's
  auto running = c->execute_unless_event("query-status", nullptr, "RESUME");
  ASSERT_TRUE(running.is_ok() && running->has_value());
  EXPECT_EQ((**running)["status"], "paused");
}

TEST(QmpClient, MissingSocketTimesOutWithAReason) {
  auto c = QmpClient::connect("/nonexistent/qmp.sock", std::chrono::milliseconds(100));
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("/nonexistent/qmp.sock"), std::string::npos);
}

}  // namespace
}  // namespace bnf::qemu
