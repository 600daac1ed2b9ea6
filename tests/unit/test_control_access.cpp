// Who may use the control socket: the socket file's mode, whatever the umask,
// and the credential check every client passes.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "agent/control_access.hpp"
#include "common/unix_socket.hpp"
#include "test_util.hpp"

namespace bnf {
namespace {

constexpr uid_t kNobody = 65534;

// Restores the umask a test changed.
class UmaskGuard {
 public:
  explicit UmaskGuard(mode_t m) : old_(::umask(m)) {}
  ~UmaskGuard() { ::umask(old_); }
  UmaskGuard(const UmaskGuard&) = delete;
  UmaskGuard& operator=(const UmaskGuard&) = delete;

 private:
  mode_t old_;
};

struct stat stat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

TEST(UnixListen, SocketFileIsPrivateWhateverTheUmask) {
  test::TempDir dir;
  const std::string path = dir.path() + "/c.sock";
  UmaskGuard open_umask(0);
  auto fd = unix_listen(path, 1);
  ASSERT_TRUE(fd.is_ok()) << fd.status().message();
  const struct stat st = stat_of(path);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600U);
  EXPECT_TRUE(unix_connect(path, std::chrono::milliseconds(0)).is_ok());
}

TEST(UnixListen, GivesTheGroupAndModeAsked) {
  test::TempDir dir;
  const std::string path = dir.path() + "/c.sock";
  UmaskGuard open_umask(0);
  const gid_t group = ::getegid() == 0 ? 65534 : ::getegid();  // root may give any group
  auto fd = unix_listen(path, 1, {0660, group});
  ASSERT_TRUE(fd.is_ok()) << fd.status().message();
  const struct stat st = stat_of(path);
  EXPECT_EQ(st.st_mode & 07777, 0660U);
  EXPECT_EQ(st.st_gid, group);
}

TEST(UnixListen, ReplacesAStaleSocketAndLeavesNoStagingFolder) {
  test::TempDir dir;
  const std::string path = dir.path() + "/c.sock";
  { ASSERT_TRUE(unix_listen(path, 1).is_ok()); }  // closed: a stale file stays
  auto fd = unix_listen(path, 1);
  ASSERT_TRUE(fd.is_ok()) << fd.status().message();
  EXPECT_TRUE(unix_connect(path, std::chrono::milliseconds(0)).is_ok());
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1U);
}

TEST(ControlAccess, AdmitsRootAndTheDaemonsUserOnly) {
  const ControlAccess a;
  EXPECT_TRUE(a.admit(0, 0).is_ok());
  EXPECT_TRUE(a.admit(::geteuid(), ::getegid()).is_ok());
  if (::geteuid() == kNobody) GTEST_SKIP() << "runs as nobody";
  const Status refused = a.admit(kNobody, kNobody);
  EXPECT_EQ(refused.code(), Errc::denied);
  EXPECT_EQ(refused.message(), "control access refused: uid 65534 is not root or the daemon's user");
  EXPECT_EQ(a.socket_file().mode, 0600U);
}

TEST(ControlAccess, AdmitsMembersOfTheControlGroup) {
  auto a = ControlAccess::with_group("root");  // gid 0, which nobody is not in
  ASSERT_TRUE(a.is_ok()) << a.status().message();
  if (::geteuid() == kNobody) GTEST_SKIP() << "runs as nobody";
  EXPECT_TRUE(a->admit(kNobody, 0).is_ok());  // primary group
  const Status refused = a->admit(kNobody, kNobody);
  EXPECT_EQ(refused.message(), "control access refused: uid 65534 is not root, the daemon's user or in group root");
  EXPECT_EQ(a->socket_file().mode, 0660U);
  EXPECT_EQ(a->socket_file().group, 0U);
}

TEST(ControlAccess, ChecksTheConnectedClientsCredentials) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  EXPECT_TRUE(ControlAccess().admit(a.get()).is_ok());  // this process: the daemon's own user
}

TEST(ControlAccess, UnknownGroupIsNamed) {
  auto a = ControlAccess::with_group("no-such-group-bnf");
  ASSERT_FALSE(a.is_ok());
  EXPECT_EQ(a.status().message(), "unknown group 'no-such-group-bnf' (--control-group)");
}

}  // namespace
}  // namespace bnf
