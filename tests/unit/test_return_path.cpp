// The return-path relay of a relayed trip, over real loopback sockets: what
// the destination QEMU writes back reaches the source QEMU's socket while both
// daemons wait for something else, each in one thread.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "protocol/control.hpp"
#include "test_util.hpp"
#include "transport/uring_tcp/uring_tcp.hpp"
#include "vm/trip/return_path.hpp"

namespace bnf::qemu {
namespace {

struct SocketPair {  // a daemon's end and its QEMU's end of the migration socket
  int daemon = -1, qemu = -1;
  SocketPair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    daemon = sv[0];
    qemu = sv[1];
  }
  ~SocketPair() {
    ::close(daemon);
    ::close(qemu);
  }
};

std::string read_some(int fd) {
  char buf[64];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

TEST(ReturnPath, TheDestinationQemusAnswerReachesTheSourceQemu) {
  auto t = transport::make_uring_tcp_transport({});
  test::ConnectedPair d = test::connect_pair(*t);  // client: the source daemon
  SocketPair dest_qemu, source_qemu;

  // Destination: its QEMU answers while the daemon waits for the source's next frame.
  ASSERT_EQ(::write(dest_qemu.qemu, "PONG", 4), 4);
  std::thread destination([&] {
    ReturnPathPump pump(*d.server, dest_qemu.daemon);
    ASSERT_TRUE(pump.until_frame().is_ok());  // returns once VM_END below waits
    EXPECT_EQ(pump.bytes(), 4U);
    auto f = proto::recv_frame(*d.server);
    ASSERT_TRUE(f.is_ok());
    EXPECT_EQ(f->header.type, proto::FrameType::vm_end);
  });

  // Source: the frame the destination sent goes into our QEMU's socket.
  uint64_t bytes = 0;
  ASSERT_TRUE(forward_return_path(*d.client, source_qemu.daemon, bytes).is_ok());
  EXPECT_EQ(bytes, 4U);
  EXPECT_EQ(read_some(source_qemu.qemu), "PONG");
  ASSERT_TRUE(proto::send_control(*d.client, proto::FrameType::vm_end, {{"root", ""}}).is_ok());
  destination.join();
}

TEST(ReturnPath, AnErrorInsteadIsTheDestinationsReason) {
  auto t = transport::make_uring_tcp_transport({});
  test::ConnectedPair d = test::connect_pair(*t);  // client: the source daemon
  SocketPair source_qemu;
  proto::send_error(*d.server, Status(Errc::no_space, "reserve image space: No space left on device"));
  uint64_t bytes = 0;
  const Status st = forward_return_path(*d.client, source_qemu.daemon, bytes);
  EXPECT_EQ(st.code(), Errc::no_space);
  EXPECT_NE(st.message().find("No space left"), std::string::npos) << st.message();
  EXPECT_EQ(bytes, 0U);
}

TEST(ReturnPath, APumpWhoseQemuClosedItsSideGetsOutOfTheWay) {
  auto t = transport::make_uring_tcp_transport({});
  test::ConnectedPair d = test::connect_pair(*t);  // client: the source daemon
  SocketPair dest_qemu;
  ::shutdown(dest_qemu.qemu, SHUT_WR);  // QEMU closed its return path
  ASSERT_TRUE(proto::send_control(*d.client, proto::FrameType::vm_end, {{"root", ""}}).is_ok());
  ReturnPathPump pump(*d.server, dest_qemu.daemon);
  ASSERT_TRUE(pump.until_frame().is_ok());
  EXPECT_EQ(pump.bytes(), 0U);
  auto f = proto::recv_frame(*d.server);
  ASSERT_TRUE(f.is_ok());
  EXPECT_EQ(f->header.type, proto::FrameType::vm_end);
}

}  // namespace
}  // namespace bnf::qemu
