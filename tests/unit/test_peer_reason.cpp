// peer_reason: what an operator reads when a trip fails. The destination's own
// reason (an ERROR frame before it closed) wins over a broken connection or
// QEMU's socket error; when our QEMU's migration broke and the destination
// just went away, both are named. Over the in-memory transport.
#include <gtest/gtest.h>

#include "protocol/control.hpp"
#include "transport/mem/mem_transport.hpp"
#include "vm/trip/peer_reason.hpp"

namespace bnf::qemu {
namespace {

struct Pair {
  transport::MemNetwork net;
  std::unique_ptr<transport::Transport> t = net.transport();
  std::unique_ptr<transport::Listener> l;
  std::unique_ptr<transport::Connection> source;
  std::unique_ptr<transport::Connection> destination;
  Pair() {
    auto listening = t->listen(*parse_endpoint("bnf+mem:dest"));
    EXPECT_TRUE(listening.is_ok());
    l = std::move(*listening);
    auto c = t->connect(*parse_endpoint("bnf+mem:dest"));
    EXPECT_TRUE(c.is_ok());
    source = std::move(*c);
    auto a = l->accept();
    EXPECT_TRUE(a.is_ok());
    destination = std::move(*a);
  }
};

const Status kQemuBroke(Errc::connection_lost, "QEMU's migration failed: Unable to write to socket");

TEST(PeerReason, TheDestinationsOwnReasonWins) {
  Pair p;
  proto::send_error(*p.destination, Status(Errc::io, "reserve image space: No space left on device"));
  p.destination.reset();
  const Status s = peer_reason(*p.source, kQemuBroke, true);
  EXPECT_EQ(s.code(), Errc::io);
  EXPECT_EQ(s.message(), "destination failed: reserve image space: No space left on device");
}

TEST(PeerReason, AnErrorFrameAlreadyReadIsTheDestinations) {
  Pair p;
  proto::send_error(*p.destination, Status(Errc::busy, "VM 'web1' already runs on this host"));
  auto f = proto::recv_frame(*p.source);  // how a trip meets it
  ASSERT_FALSE(f.is_ok());
  const Status s = peer_reason(*p.source, f.status());
  EXPECT_EQ(s.message(), "destination failed: VM 'web1' already runs on this host");
}

TEST(PeerReason, QemuBrokeAndTheDestinationIsGone) {
  Pair p;
  p.destination.reset();
  const Status s = peer_reason(*p.source, kQemuBroke, true);
  EXPECT_EQ(s.code(), Errc::connection_lost);
  EXPECT_NE(s.message().find("(QEMU's migration failed: Unable to write to socket)"), std::string::npos) << s.message();
  EXPECT_TRUE(s.message().starts_with("connection")) << s.message();  // the bnf connection's own words first
}

TEST(PeerReason, OtherFailuresAreLeftAsTheyAre) {
  Pair p;
  const Status timeout(Errc::unreachable, "the destination is unreachable: no progress for 4 s");
  EXPECT_EQ(peer_reason(*p.source, timeout, true).message(), timeout.message());
  p.destination.reset();
  const Status lost(Errc::connection_lost, "connection to dest lost: the peer closed it");
  EXPECT_EQ(peer_reason(*p.source, lost).message(), lost.message());
}

}  // namespace
}  // namespace bnf::qemu
