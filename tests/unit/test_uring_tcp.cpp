// uring-tcp over real loopback sockets: ordering, scatter landing, zero-copy.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
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
  const Result<RegionHandle> registered = p.client->register_region(img);
  ASSERT_TRUE(registered.is_ok());

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

TEST(UringTcpZeroCopyNames, EachModeByItsNameAndNoOtherName) {
  EXPECT_EQ(*parse_zero_copy("auto"), UringTcpOptions::ZeroCopy::automatic);
  EXPECT_EQ(*parse_zero_copy("on"), UringTcpOptions::ZeroCopy::on);
  EXPECT_EQ(*parse_zero_copy("off"), UringTcpOptions::ZeroCopy::off);
  for (const char* bad : {"onn", "", "ON", "1"}) {
    const auto z = parse_zero_copy(bad);
    ASSERT_FALSE(z.is_ok()) << bad;
    EXPECT_EQ(z.status().code(), Errc::invalid_argument);
    EXPECT_EQ(z.status().message(), fmt::format("--zero-copy must be one of auto, on, off, not '{}'", bad));
  }
}

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

namespace bnf::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

TEST(UringTcpLimits, ASilentPeerIsGivenUpAfterTheIdleLimit) {
  auto t = make_uring_tcp_transport();
  test::ConnectedPair p = test::connect_pair(*t);
  p.server->limit_receives({.idle = 300ms});
  std::byte b[32];
  const auto t0 = Clock::now();
  Status s = p.server->recv(b);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), Errc::connection_lost);
  EXPECT_NE(s.message().find("nothing received for 0 s (the peer timeout)"), std::string::npos) << s.message();
  EXPECT_GE(seconds_since(t0), 0.25);
  EXPECT_LT(seconds_since(t0), 2.0);
}

TEST(UringTcpLimits, BytesArrivingKeepAReceiveGoingPastTheIdleLimit) {
  auto t = make_uring_tcp_transport();
  test::ConnectedPair p = test::connect_pair(*t);
  p.server->limit_receives({.idle = 300ms});
  std::thread slow([&] {
    for (int i = 0; i < 8; ++i) {
      std::this_thread::sleep_for(100ms);
      const std::byte one[1] = {std::byte(i)};
      ASSERT_TRUE(post_bytes(*p.client, one).is_ok());
      ASSERT_TRUE(p.client->flush().is_ok());
    }
  });
  std::byte b[8];
  Status s = p.server->recv(b);
  slow.join();
  ASSERT_TRUE(s.is_ok()) << s.message();
  EXPECT_EQ(b[7], std::byte(7));
}

TEST(UringTcpLimits, ABusyPeerElsewhereKeepsAQuietReceiveWaiting) {
  auto t = make_uring_tcp_transport();
  test::ConnectedPair p = test::connect_pair(*t);
  std::atomic<int> asked{0};
  p.server->limit_receives({.idle = 100ms, .still_active = [&] { return ++asked < 4; }});
  std::byte b[4];
  const auto t0 = Clock::now();
  Status s = p.server->recv(b);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(asked.load(), 4);
  EXPECT_GE(seconds_since(t0), 0.35);
}

// The deadline holds however the bytes trickle in.
TEST(UringTcpLimits, ATricklingPeerMissesTheDeadline) {
  auto t = make_uring_tcp_transport();
  test::ConnectedPair p = test::connect_pair(*t);
  ReceiveLimits l;
  l.deadline = Clock::now() + 500ms;
  l.deadline_passed = "the peer did not authenticate in time";
  p.server->limit_receives(l);
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    while (!stop) {
      const std::byte one[1] = {std::byte{1}};
      if (!post_bytes(*p.client, one).is_ok() || !p.client->flush().is_ok()) return;
      std::this_thread::sleep_for(50ms);
    }
  });
  std::byte b[32];
  const auto t0 = Clock::now();
  Status s = p.server->recv(b);
  stop = true;
  trickle.join();
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.message(), "the peer did not authenticate in time");
  EXPECT_LT(seconds_since(t0), 1.5);
}

}  // namespace
}  // namespace bnf::transport
