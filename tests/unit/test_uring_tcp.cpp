// uring-tcp over real loopback sockets: ordering, scatter landing, zero-copy.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <thread>

#include "test_util.hpp"
#include "transport/uring_tcp/uring_tcp.hpp"

namespace bnf::transport {
namespace {

using Pair = test::ConnectedPair;
using test::connect_pair;

class UringTcp : public ::testing::TestWithParam<UringTcpOptions::ZeroCopy> {};

// Many posts of mixed registered/unregistered parts arrive whole and in order,
// and land at the scattered addresses the receiver names.
TEST_P(UringTcp, OrderedDeliveryIntoScatteredDestinations) {
  UringTcpOptions o;
  o.zero_copy = GetParam();
  o.batch_bytes = 256 << 10;
  auto t = make_uring_tcp_transport(o);
  Pair p = connect_pair(*t);
  auto img = test::random_image(2048, 11);  // 8 MiB registered source
  ASSERT_TRUE(p.client->register_region(img).is_ok());

  std::thread sender([&] {
    for (uint64_t i = 0; i < 2048; i += 2) {
      uint64_t tag = i;  // unregistered 8-byte header, copied at post()
      const ConstBuffer parts[] = {{reinterpret_cast<std::byte*>(&tag), 8}, {img.data() + i * 4096, 8192}};
      ASSERT_TRUE(p.client->post(parts).is_ok());
    }
    ASSERT_TRUE(p.client->flush().is_ok());
  });
  std::vector<std::byte> out(img.size());
  for (uint64_t i = 0; i < 2048; i += 2) {
    uint64_t tag = ~0ULL;
    ASSERT_TRUE(p.server->recv({reinterpret_cast<std::byte*>(&tag), 8}).is_ok());
    ASSERT_EQ(tag, i);
    // land the two pages swapped, to prove the scatter addresses are honoured
    const MutableBuffer dst[] = {{out.data() + (i + 1) * 4096, 4096}, {out.data() + i * 4096, 4096}};
    ASSERT_TRUE(p.server->recv_scatter(dst).is_ok());
  }
  sender.join();
  for (uint64_t i = 0; i < 2048; i += 2) {
    ASSERT_EQ(std::memcmp(out.data() + (i + 1) * 4096, img.data() + i * 4096, 4096), 0);
    ASSERT_EQ(std::memcmp(out.data() + i * 4096, img.data() + (i + 1) * 4096, 4096), 0);
  }
  const ConnectionStats s = p.client->stats();
  EXPECT_EQ(s.bytes_sent, 1024 * (8 + 8192));
  if (GetParam() == UringTcpOptions::ZeroCopy::on) {
    EXPECT_GT(s.zc_bytes, 0U);
    EXPECT_EQ(s.zc_notifications, s.send_ops);  // every zero-copy send was completed by the kernel
  } else {
    EXPECT_EQ(s.zc_bytes, 0U);  // automatic: loopback peer, plain sends
  }
}

INSTANTIATE_TEST_SUITE_P(ZeroCopyModes, UringTcp,
                         ::testing::Values(UringTcpOptions::ZeroCopy::on, UringTcpOptions::ZeroCopy::automatic,
                                           UringTcpOptions::ZeroCopy::off));

TEST(UringTcpErrors, PeerClosingIsAnErrorNotAHang) {
  auto t = make_uring_tcp_transport();
  Pair p = connect_pair(*t);
  p.client.reset();
  std::byte b[16];
  Status s = p.server->recv(b);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("closed"), std::string::npos);
}

TEST(UringTcpErrors, RefusedConnectIsUnreachable) {
  auto t = make_uring_tcp_transport();
  auto l = t->listen(*parse_endpoint("bnf+tcp:127.0.0.1:0"));
  ASSERT_TRUE(l.is_ok());
  Endpoint gone = (*l)->local();
  l->reset();  // nobody listens there any more
  auto c = t->connect(gone);
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), Errc::unreachable);
}

}  // namespace
}  // namespace bnf::transport
