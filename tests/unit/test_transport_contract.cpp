// The contract of transport.hpp, checked the same way over every transport:
// uring-tcp in its three zero-copy modes, mem, plain, and the secure channel
// over uring-tcp in both protections. Where a transport differs by design (mem
// has no socket and its own 4 MiB window; the secure channel's counters are
// its inner connection's, so they include the records' lengths and tags), the
// case below says so and the tests check that difference.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <numeric>
#include <ostream>
#include <random>
#include <thread>
#include <vector>

#include "common/crc32c.hpp"
#include "protocol/peer_auth.hpp"
#include "test_util.hpp"
#include "transport/mem/mem_transport.hpp"
#include "transport/plain/plain_connection.hpp"
#include "transport/secure/secure_connection.hpp"
#include "transport/tcp/socket_util.hpp"
#include "transport/uring_tcp/uring_tcp.hpp"

namespace bnf::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Bytes = std::vector<std::byte>;
using ZC = UringTcpOptions::ZeroCopy;

// A wait for something the contract says happens; far past any real delay,
// it only tells a hang from a slow machine.
constexpr auto kHang = 15s;

enum class Kind : uint8_t { uring, mem, plain, secure };

// What posting a registered region shows in the sender's stats().zc_bytes.
enum class ZeroCopyShows : uint8_t {
  nothing,       // the transport copies every byte (or, loopback under auto, sends plainly)
  registration,  // the region's bytes while it is registered, none after its handle is let go
  always,        // bytes whatever the caller registers: the secure channel's own arena
};

struct Case {
  const char* name;
  Kind kind;
  ZC zero_copy = ZC::off;  // uring-tcp's, under the secure channel too
  Protection protection = Protection::encrypted;
  ZeroCopyShows zc = ZeroCopyShows::nothing;
  bool pollable = true;  // mem has no socket
  bool stats_count_records = false;
  // A post waiting for the kernel to let go of zero-copy bytes it sent
  // earlier waits on after shutdown(), until the peer takes them or closes
  // (the kernel may read them until then; uring_tcp.hpp).
  bool post_waits_for_zero_copy = false;
  size_t own_buffering = 0;  // bytes a sender may hold beyond the kernel's socket buffers
};

// gtest names a case by its name, not its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// uring-tcp: two send batches of staging (uring_tcp.cpp kStagingBytes).
constexpr size_t kUringBuffering = size_t{2} * (256U << 10);
// The secure channel adds its arena (secure_connection.cpp).
constexpr size_t kEncryptedArena = 2U << 20;
constexpr size_t kIntegrityArena = 64U << 10;
// mem: one bounded pipe per direction (mem_transport.cpp Pipe::kCapacity).
constexpr size_t kMemPipe = 4U << 20;

const Case kCases[] = {
    {.name = "uring_tcp_zc_on",
     .kind = Kind::uring,
     .zero_copy = ZC::on,
     .zc = ZeroCopyShows::registration,
     .own_buffering = kUringBuffering},
    {.name = "uring_tcp_zc_auto", .kind = Kind::uring, .zero_copy = ZC::automatic, .own_buffering = kUringBuffering},
    {.name = "uring_tcp_zc_off", .kind = Kind::uring, .zero_copy = ZC::off, .own_buffering = kUringBuffering},
    {.name = "mem", .kind = Kind::mem, .pollable = false, .own_buffering = kMemPipe},
    {.name = "plain", .kind = Kind::plain},
    {.name = "secure_encrypted_over_uring_tcp",
     .kind = Kind::secure,
     .zero_copy = ZC::on,
     .protection = Protection::encrypted,
     .zc = ZeroCopyShows::always,
     .stats_count_records = true,
     .post_waits_for_zero_copy = true,
     .own_buffering = kUringBuffering + kEncryptedArena},
    {.name = "secure_integrity_over_uring_tcp",
     .kind = Kind::secure,
     .zero_copy = ZC::on,
     .protection = Protection::integrity,
     .zc = ZeroCopyShows::registration,
     .stats_count_records = true,
     .own_buffering = kUringBuffering + kIntegrityArena},
};

// Both ends of one connection, and what they need to live.
struct Ends {
  std::unique_ptr<MemNetwork> net;
  std::unique_ptr<Transport> transport;
  std::unique_ptr<Connection> client;
  std::unique_ptr<Connection> server;
  void shutdown() const {
    if (client) client->shutdown();
    if (server) server->shutdown();
  }
};

Ends mem_ends() {
  Ends e;
  e.net = std::make_unique<MemNetwork>();
  e.transport = e.net->transport();
  const Endpoint ep = *parse_endpoint("bnf+mem:contract");
  auto listener = e.transport->listen(ep);
  EXPECT_TRUE(listener.is_ok());
  auto client = e.transport->connect(ep);  // queued until accepted
  EXPECT_TRUE(client.is_ok());
  auto server = (*listener)->accept();
  EXPECT_TRUE(server.is_ok());
  e.client = std::move(client).value();
  e.server = std::move(server).value();
  return e;
}

Ends plain_ends() {
  uint16_t port = 0;
  auto listening = tcp_listen(*parse_endpoint("bnf+tcp:127.0.0.1:0"), &port);
  EXPECT_TRUE(listening.is_ok());
  Endpoint ep = *parse_endpoint("bnf+tcp:127.0.0.1:0");
  ep.port = port;
  auto client = tcp_connect(ep, 5000, 30000);
  EXPECT_TRUE(client.is_ok());
  const int accepted = ::accept4(listening->get(), nullptr, nullptr, SOCK_CLOEXEC);
  EXPECT_GE(accepted, 0);
  Ends e;
  e.client = std::make_unique<PlainConnection>(std::move(client).value());
  e.server = std::make_unique<PlainConnection>(UniqueFd(accepted));
  return e;
}

Ends secure_ends(Ends inner, Protection p) {
  const proto::PeerKey key = proto::PeerKey::generate();
  proto::Nonce connecting{};
  proto::Nonce listening{};
  connecting[0] = 1;
  listening[0] = 2;
  auto ck = proto::derive_channel_keys(key, proto::PeerRole::connecting, connecting, listening, p);
  auto lk = proto::derive_channel_keys(key, proto::PeerRole::listening, connecting, listening, p);
  EXPECT_TRUE(ck.is_ok() && lk.is_ok());
  auto client = SecureConnection::over(std::move(inner.client), *ck);
  auto server = SecureConnection::over(std::move(inner.server), *lk);
  EXPECT_TRUE(client.is_ok() && server.is_ok());
  inner.client = std::move(client).value();
  inner.server = std::move(server).value();
  return inner;
}

Ends connect_ends(const Case& c) {
  if (c.kind == Kind::mem) return mem_ends();
  if (c.kind == Kind::plain) return plain_ends();
  Ends e;
  e.transport = make_uring_tcp_transport({.zero_copy = c.zero_copy});
  test::ConnectedPair p = test::connect_pair(*e.transport);
  e.client = std::move(p.client);
  e.server = std::move(p.server);
  if (c.kind == Kind::secure) return secure_ends(std::move(e), c.protection);
  return e;
}

// Shuts both ends if a test leaves before `pending` gave its result, so that
// the thread behind it is not left blocked in a post or a receive (nor the
// future's destructor waiting for it).
struct UnblockOnExit {
  const Ends& ends;
  std::future<Status>& pending;
  UnblockOnExit(const Ends& e, std::future<Status>& f) : ends(e), pending(f) {}
  UnblockOnExit(const UnblockOnExit&) = delete;
  UnblockOnExit& operator=(const UnblockOnExit&) = delete;
  ~UnblockOnExit() {
    if (pending.valid()) ends.shutdown();
  }
};

// The Status `f` gives, or a failure if it does not come within kHang. A
// thread still blocked then is unblocked by shutting both ends; one that stays
// blocked ends the test binary rather than hanging it.
Status await(std::future<Status>& f, const Ends& ends) {
  if (f.wait_for(kHang) == std::future_status::ready) return f.get();
  ADD_FAILURE() << "an operation the contract bounds is still blocked after " << kHang.count() << " s";
  ends.shutdown();
  if (f.wait_for(kHang) != std::future_status::ready) {
    std::fputs("blocked even after shutdown(): giving up\n", stderr);
    std::abort();
  }
  (void)f.get();
  return {Errc::internal, "hung"};
}

std::future<Status> on_thread(std::function<Status()> fn) { return std::async(std::launch::async, std::move(fn)); }

Bytes random_bytes(size_t n, uint64_t seed) {
  Bytes b = test::random_image((n + 4095) / 4096, seed);
  b.resize(n);
  return b;
}

uint32_t crc_of(std::span<const std::byte> b) { return crc32c(b.data(), b.size()); }

Status send_all(Connection& c, std::span<const ConstBuffer> parts) {
  BNF_TRY(c.post(parts));
  return c.flush();
}

class TransportContract : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    ends_ = connect_ends(GetParam());
    ASSERT_TRUE(ends_.client && ends_.server);
  }
  Connection& client() { return *ends_.client; }
  Connection& server() { return *ends_.server; }
  Ends ends_;
};

// 1 B ... 3 MiB: the sizes where a transport's batching, staging and record
// boundaries lie, then many random ones, shuffled.
std::vector<size_t> mixed_sizes(uint64_t seed) {
  std::vector<size_t> sizes = {1,     2,     3,      7,      64,     4095,   4096,     4097,           65535,
                               65536, 65537, 262143, 262144, 262145, 262164, 1U << 20, (1U << 20) + 3, 3U << 20};
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 300; ++i) sizes.push_back(1 + rng() % (size_t{1} << (1 + rng() % 17)));
  std::shuffle(sizes.begin(), sizes.end(), rng);
  return sizes;
}

// Posts of every size arrive whole, in order, byte for byte; some are gathered
// from two parts, and those in the source's registered half go zero-copy where
// the transport does that.
TEST_P(TransportContract, ManyPostsOfMixedSizesArriveInOrderAndExact) {
  const std::vector<size_t> sizes = mixed_sizes(5);
  const size_t total = std::accumulate(sizes.begin(), sizes.end(), size_t{0});
  const Bytes src = random_bytes(total, 17);
  auto registered = client().register_region(std::span(src).subspan(total / 2));
  ASSERT_TRUE(registered.is_ok()) << registered.status().message();
  std::future<Status> sent = on_thread([&]() -> Status {
    size_t off = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const size_t first = i % 3 == 0 ? sizes[i] / 2 : sizes[i];  // every third post gathers two parts
      const ConstBuffer parts[] = {{src.data() + off, first}, {src.data() + off + first, sizes[i] - first}};
      BNF_TRY(client().post(parts));
      off += sizes[i];
    }
    return client().flush();
  });
  const UnblockOnExit unblock{ends_, sent};
  size_t off = 0;
  size_t wrong = 0;
  for (const size_t n : sizes) {
    Bytes got(n);
    const Status st = server().recv(got);
    ASSERT_TRUE(st.is_ok()) << st.message();
    if (crc_of(got) != crc_of(std::span(src).subspan(off, n))) ++wrong;
    off += n;
  }
  EXPECT_EQ(wrong, 0U) << "of " << sizes.size() << " posts";
  const Status st = await(sent, ends_);
  EXPECT_TRUE(st.is_ok()) << st.message();
}

// One message; where each of its parts lands, as (destination offset, size).
struct Landing {
  size_t at;
  size_t size;
};

// Parts of awkward sizes (a zero-size one too) land in reverse order with
// gaps between them; then 1500 pages land in shuffled order (more parts than
// one receive call takes at once). Every byte lands where its part says, and
// no byte outside the parts is touched.
TEST_P(TransportContract, RecvScatterLandsEachPartAtItsAddress) {
  std::vector<size_t> sizes = {1, 3, 0, 4096, 100000, 8192, 12345, 196608, 5};
  std::vector<size_t> pages(1500, 4096);
  size_t odd_total = std::accumulate(sizes.begin(), sizes.end(), size_t{0});
  sizes.insert(sizes.end(), pages.begin(), pages.end());
  const size_t total = std::accumulate(sizes.begin(), sizes.end(), size_t{0});
  const Bytes src = random_bytes(total, 23);
  std::future<Status> sent = on_thread([&] {
    const ConstBuffer parts[] = {{src.data(), odd_total}, {src.data() + odd_total, total - odd_total}};
    return send_all(client(), parts);
  });
  const UnblockOnExit unblock{ends_, sent};

  constexpr size_t kGap = 7;
  Bytes dst(total + kGap * (sizes.size() + 1), std::byte{0xa5});
  std::vector<Landing> where(sizes.size());
  std::vector<size_t> order(sizes.size());
  std::iota(order.begin(), order.end(), 0);
  std::reverse(order.begin(), order.begin() + 9);
  std::shuffle(order.begin() + 9, order.end(), std::mt19937_64(3));
  size_t at = kGap;
  for (const size_t i : order) {
    where[i] = {at, sizes[i]};
    at += sizes[i] + kGap;
  }
  std::vector<MutableBuffer> first;
  std::vector<MutableBuffer> second;
  for (size_t i = 0; i < sizes.size(); ++i) (i < 9 ? first : second).push_back({dst.data() + where[i].at, sizes[i]});
  Status st = server().recv_scatter(first);
  ASSERT_TRUE(st.is_ok()) << st.message();
  st = server().recv_scatter(second);
  ASSERT_TRUE(st.is_ok()) << st.message();
  EXPECT_TRUE(await(sent, ends_).is_ok());

  size_t from = 0;
  size_t misplaced = 0;
  std::vector<bool> inside(dst.size(), false);
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (std::memcmp(dst.data() + where[i].at, src.data() + from, sizes[i]) != 0) ++misplaced;
    std::fill_n(inside.begin() + static_cast<long>(where[i].at), sizes[i], true);
    from += sizes[i];
  }
  EXPECT_EQ(misplaced, 0U);
  size_t touched = 0;
  for (size_t i = 0; i < dst.size(); ++i)
    if (!inside[i] && dst[i] != std::byte{0xa5}) ++touched;
  EXPECT_EQ(touched, 0U) << "bytes outside every part were written";
}

// Posts `region` in 256 KiB parts with a header, flushes, and receives it on
// the other end; the received copy is the result.
Bytes send_region(const Ends& e, std::span<const std::byte> region) {
  std::future<Status> sent = on_thread([&]() -> Status {
    const uint64_t header = region.size();
    std::vector<ConstBuffer> parts = {{reinterpret_cast<const std::byte*>(&header), sizeof header}};
    for (size_t off = 0; off < region.size(); off += 256U << 10)
      parts.push_back({region.data() + off, std::min<size_t>(256U << 10, region.size() - off)});
    return send_all(*e.client, parts);
  });
  const UnblockOnExit unblock{e, sent};
  uint64_t header = 0;
  Bytes got(region.size());
  const MutableBuffer parts[] = {{reinterpret_cast<std::byte*>(&header), sizeof header}, {got.data(), got.size()}};
  const Status st = e.server->recv_scatter(parts);
  EXPECT_TRUE(st.is_ok()) << st.message();
  EXPECT_EQ(header, region.size());
  const Status s = await(sent, e);
  EXPECT_TRUE(s.is_ok()) << s.message();
  return got;
}

// A registered region posted without a copy arrives intact after flush; once
// its handle is let go the same bytes are copied (zero-copy stops), and they
// still arrive intact.
TEST_P(TransportContract, ARegisteredRegionArrivesIntactAndItsHandleDeregistersIt) {
  Bytes region = test::random_image(512, 29);  // 2 MiB
  auto registered = client().register_region(region);
  ASSERT_TRUE(registered.is_ok()) << registered.status().message();
  RegionHandle handle = std::move(registered).value();
  EXPECT_TRUE(handle.registered());
  EXPECT_EQ(handle.bytes().data(), region.data());
  EXPECT_EQ(handle.bytes().size(), region.size());
  EXPECT_TRUE(handle.remote_descriptor().empty());  // none of these transports addresses the peer's memory

  const uint64_t zc_before = client().stats().zc_bytes;
  EXPECT_TRUE(send_region(ends_, region) == region);
  const uint64_t zc_registered = client().stats().zc_bytes;

  handle.reset();
  EXPECT_FALSE(handle.registered());
  region[12345] ^= std::byte{0xff};  // after flush the region is the caller's again
  EXPECT_TRUE(send_region(ends_, region) == region);
  const uint64_t zc_released = client().stats().zc_bytes;

  switch (GetParam().zc) {
    case ZeroCopyShows::nothing: EXPECT_EQ(zc_released, 0U); break;
    case ZeroCopyShows::registration:
      EXPECT_GE(zc_registered - zc_before, region.size());
      EXPECT_EQ(zc_released, zc_registered) << "bytes of a released region still went zero-copy";
      break;
    case ZeroCopyShows::always:
      EXPECT_GT(zc_registered, zc_before);
      EXPECT_GT(zc_released, zc_registered) << "the channel's own registration was lost";
      break;
  }
}

// A handle may outlive its connection: letting it go then does nothing (no
// call into the connection's freed memory; ASan would see one).
TEST_P(TransportContract, AHandleOutlivingItsConnectionReleasesNothing) {
  const Bytes region = test::random_image(16, 31);
  auto registered = client().register_region(region);
  ASSERT_TRUE(registered.is_ok()) << registered.status().message();
  RegionHandle handle = std::move(registered).value();
  ends_.client.reset();
  ends_.server.reset();
  EXPECT_TRUE(handle.registered());
  handle.reset();
  EXPECT_FALSE(handle.registered());
}

// What the kernel may hold of the stream between the ends: both socket
// buffers (SO_SNDBUF and SO_RCVBUF report what the kernel allows, overhead
// included), doubled as a margin; mem has none.
size_t kernel_buffering(const Ends& e) {
  auto buffer = [](int fd, int opt) -> size_t {
    int v = 0;
    socklen_t len = sizeof v;
    if (fd < 0 || ::getsockopt(fd, SOL_SOCKET, opt, &v, &len) != 0) return 0;
    return static_cast<size_t>(v);
  };
  return 2 * (buffer(e.client->socket_fd(), SO_SNDBUF) + buffer(e.server->socket_fd(), SO_RCVBUF));
}

// Blocks until `posted` stops growing for a while (the sender is blocked),
// the sender finishes, or time runs out; returns what was posted by then.
// A stall seen early (a busy machine) only makes the count smaller.
size_t posted_when_stalled(const std::atomic<size_t>& posted, const std::atomic<bool>& done) {
  const auto start = Clock::now();
  size_t last = posted.load();
  auto since = Clock::now();
  while (!done && Clock::now() - since < 300ms && Clock::now() - start < kHang) {
    std::this_thread::sleep_for(20ms);
    if (const size_t now = posted.load(); now != last) {
      last = now;
      since = Clock::now();
    }
  }
  return posted.load();
}

// With a reader that reads nothing, the sender gets no further than what the
// transport and the kernel buffer, however much it has to post: post() blocks
// rather than queuing. Once the reader reads, every chunk arrives in order.
TEST_P(TransportContract, PostBlocksWhenTheReaderFallsBehind) {
  constexpr size_t kChunk = 256U << 10;
  constexpr size_t kTotal = 48U << 20;
  std::atomic<size_t> posted{0};
  std::atomic<bool> done{false};
  std::future<Status> sent = on_thread([&]() -> Status {
    Bytes chunk(kChunk, std::byte{0x5c});
    for (uint64_t i = 0; i < kTotal / kChunk; ++i) {
      std::memcpy(chunk.data(), &i, sizeof i);
      std::memcpy(chunk.data() + kChunk - sizeof i, &i, sizeof i);
      BNF_TRY(post_bytes(client(), chunk));
      posted += kChunk;
    }
    Status st = client().flush();
    done = true;
    return st;
  });
  const UnblockOnExit unblock{ends_, sent};
  const size_t ahead = posted_when_stalled(posted, done);
  const size_t bound = kernel_buffering(ends_) + GetParam().own_buffering + kChunk;
  ASSERT_LT(bound, kTotal) << "the test cannot tell a bound window from an unbounded queue";
  EXPECT_LE(ahead, bound) << "the sender got " << ahead << " bytes ahead of a reader that read nothing";
  EXPECT_GT(ahead, 0U);

  Bytes chunk(kChunk);
  size_t out_of_order = 0;
  for (uint64_t i = 0; i < kTotal / kChunk; ++i) {
    const Status st = server().recv(chunk);
    ASSERT_TRUE(st.is_ok()) << st.message();
    uint64_t head = 0;
    uint64_t tail = 0;
    std::memcpy(&head, chunk.data(), sizeof head);
    std::memcpy(&tail, chunk.data() + kChunk - sizeof tail, sizeof tail);
    if (head != i || tail != i) ++out_of_order;
  }
  EXPECT_EQ(out_of_order, 0U);
  const Status st = await(sent, ends_);
  EXPECT_TRUE(st.is_ok()) << st.message();
}

// A receive from a peer that sends nothing fails once the idle bound passes
// (not before it), and does not wait for ever.
TEST_P(TransportContract, AnIdleBoundFailsAReceiveFromASilentPeer) {
  constexpr auto kIdle = 200ms;
  server().limit_receives({.idle = kIdle});
  const auto start = Clock::now();
  std::future<Status> got = on_thread([&] {
    std::byte b[16];
    return server().recv(b);
  });
  const Status st = await(got, ends_);
  const auto waited = Clock::now() - start;
  EXPECT_FALSE(st.is_ok());
  EXPECT_EQ(st.code(), Errc::connection_lost) << st.message();
  EXPECT_GE(waited, kIdle - 10ms);  // the bounds' waits round to whole milliseconds
}

// shutdown() on one end unblocks a receive pending on it (another thread's)
// and one pending on the peer; that end's later receives and sends fail.
TEST_P(TransportContract, ShutdownUnblocksPendingReceivesAndLaterCallsFail) {
  std::byte here[16];
  std::byte there[16];
  std::future<Status> pending = on_thread([&] { return server().recv(here); });
  std::future<Status> peer_pending = on_thread([&] { return client().recv(there); });
  std::this_thread::sleep_for(50ms);  // let both block; they must fail all the same if they start later
  server().shutdown();
  EXPECT_FALSE(await(pending, ends_).is_ok());
  EXPECT_FALSE(await(peer_pending, ends_).is_ok());

  EXPECT_FALSE(server().recv(here).is_ok());
  const std::byte one[1] = {std::byte{1}};
  EXPECT_FALSE(post_bytes(server(), one).is_ok() && server().flush().is_ok()) << "a send after shutdown() went out";
}

// shutdown() unblocks a post blocked by a reader that reads nothing, and the
// post fails.
TEST_P(TransportContract, ShutdownUnblocksABlockedPost) {
  std::atomic<size_t> posted{0};
  std::atomic<bool> done{false};
  std::future<Status> sent = on_thread([&]() -> Status {
    const Bytes chunk(256U << 10, std::byte{0x3c});
    for (int i = 0; i < 1024; ++i) {  // far more than any window: the posts block
      BNF_TRY(post_bytes(client(), chunk));
      posted += chunk.size();
    }
    Status st = client().flush();
    done = true;
    return st;
  });
  const UnblockOnExit unblock{ends_, sent};
  (void)posted_when_stalled(posted, done);
  ASSERT_FALSE(done) << "nothing blocked the posts";
  client().shutdown();
  if (GetParam().post_waits_for_zero_copy) ends_.server.reset();
  EXPECT_FALSE(await(sent, ends_).is_ok());
}

// A peer that goes away partway through a message fails the receive waiting
// for the rest: no hang, no crash.
TEST_P(TransportContract, APeerClosingMidMessageFailsTheReceive) {
  const Bytes part = random_bytes(1000, 37);
  const ConstBuffer one[] = {{part.data(), part.size()}};
  ASSERT_TRUE(send_all(client(), one).is_ok());
  std::future<Status> got = on_thread([&] {
    Bytes whole(4096);
    return server().recv(whole);
  });
  ends_.client.reset();
  const Status st = await(got, ends_);
  EXPECT_FALSE(st.is_ok());
  EXPECT_FALSE(st.message().empty());
}

// Each end counts the bytes it sent and received. The secure channel counts
// its inner connection's: the records' lengths and tags too, the same on both ends.
TEST_P(TransportContract, StatsCountTheBytesSentAndReceived) {
  const Bytes there = random_bytes(300000 + 5000 + 10, 41);
  const Bytes back = random_bytes(777, 43);
  std::future<Status> sent = on_thread([&] {
    const ConstBuffer parts[] = {{there.data(), 10}, {there.data() + 10, 5000}, {there.data() + 5010, 300000}};
    return send_all(client(), parts);
  });
  const UnblockOnExit unblock{ends_, sent};
  Bytes got(there.size());
  ASSERT_TRUE(server().recv(got).is_ok());
  ASSERT_TRUE(await(sent, ends_).is_ok());  // before the client receives: one thread uses a connection at a time
  const ConstBuffer reply[] = {{back.data(), back.size()}};
  ASSERT_TRUE(send_all(server(), reply).is_ok());
  Bytes got_back(back.size());
  ASSERT_TRUE(client().recv(got_back).is_ok());

  const ConnectionStats c = client().stats();
  const ConnectionStats s = server().stats();
  EXPECT_EQ(s.bytes_received, c.bytes_sent);
  EXPECT_EQ(c.bytes_received, s.bytes_sent);
  if (GetParam().stats_count_records) {
    EXPECT_GT(c.bytes_sent, there.size());
    EXPECT_GT(s.bytes_sent, back.size());
  } else {
    EXPECT_EQ(c.bytes_sent, there.size());
    EXPECT_EQ(s.bytes_sent, back.size());
  }
}

// capabilities().pollable says whether socket_fd() is there, on both ends;
// where it is, the descriptor polls readable once bytes arrive. mem has none.
TEST_P(TransportContract, PollableMatchesHavingASocket) {
  for (const Connection* c : {&client(), &server()}) {
    EXPECT_EQ(c->capabilities().pollable, c->socket_fd() >= 0);
    EXPECT_EQ(c->capabilities().pollable, GetParam().pollable);
  }
  if (ends_.transport) {
    EXPECT_EQ(ends_.transport->capabilities().pollable, GetParam().pollable);
  }
  if (!GetParam().pollable) return;
  const std::byte one[1] = {std::byte{9}};
  ASSERT_TRUE(post_bytes(client(), one).is_ok() && client().flush().is_ok());
  pollfd p{server().socket_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kHang).count())), 1);
  std::byte b[1];
  ASSERT_TRUE(server().recv(b).is_ok());
  EXPECT_EQ(b[0], one[0]);
}

INSTANTIATE_TEST_SUITE_P(Transports, TransportContract, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

// The handle's own rules, on a table alone: one release per registration,
// moves hand it on, and the table forgets only the region released.
TEST(RegionHandle, ReleasesItsRegionOnceAndMovesHandItOn) {
  auto table = std::make_shared<RegionTable>();
  const Bytes a(8192);
  RegionHandle first = table->add(a);
  RegionHandle second = table->add(std::span(a).subspan(4096));
  EXPECT_NE(first.id(), second.id());
  EXPECT_EQ(table->size(), 2U);

  RegionHandle moved = std::move(first);
  EXPECT_FALSE(first.registered());  // NOLINT(bugprone-use-after-move): a moved-from handle is empty
  EXPECT_TRUE(moved.registered());
  EXPECT_EQ(table->size(), 2U);
  EXPECT_TRUE(table->contains(a.data(), 100));

  moved.reset();
  moved.reset();
  EXPECT_EQ(table->size(), 1U);
  EXPECT_FALSE(table->contains(a.data(), 100));
  EXPECT_TRUE(table->contains(a.data() + 4096, 4096));
  EXPECT_FALSE(table->contains(a.data() + 4000, 200));  // straddles the registered region's start

  second = table->add(a);  // move-assigning over a handle releases what it held
  EXPECT_EQ(table->size(), 1U);
  EXPECT_TRUE(table->contains(a.data(), 8192));
  table.reset();
  second.reset();  // the table is gone: nothing to release, nothing touched
  EXPECT_FALSE(second.registered());
}

}  // namespace
}  // namespace bnf::transport
