// The real push engine (sender, daemon, store) over the in-memory transport,
// with faults injected into the byte streams.
#include <gtest/gtest.h>
#include <sys/statvfs.h>

#include <cstring>
#include <thread>

#include "agent/daemon.hpp"
#include "common/crc32c.hpp"
#include "protocol/authenticated_transport.hpp"
#include "protocol/control.hpp"
#include "push/push_sender.hpp"
#include "test_util.hpp"
#include "transport/mem/mem_transport.hpp"

namespace bnf {
namespace {

constexpr uint64_t kPages = 2048;  // 8 MiB

class PushMem : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<Daemon>(dir_.path(), net_.transport(), key_, log_, limits());
    ASSERT_TRUE(daemon_->start(*parse_endpoint("bnf+mem:daemon")).is_ok());
    thread_ = std::thread([this] { daemon_->run(); });
  }
  void TearDown() override {
    daemon_->stop();
    thread_.join();
  }
  virtual DaemonLimits limits() { return {}; }

  PushOptions opts(unsigned streams = 1) {
    PushOptions o;
    o.name = "vm";
    o.to = *parse_endpoint("bnf+mem:daemon");
    o.streams = streams;
    o.sender_id = "test";
    o.state_file = state_.path() + "/push.state";
    return o;
  }
  Result<PushReport> push(const std::vector<std::byte>& img, const PushOptions& o) {
    proto::AuthenticatedTransport t(net_.transport(), key_);
    return push_image(t, img, o);
  }
  std::vector<std::byte> snapshot_bytes() {
    SnapshotStore s(dir_.path());
    auto m = s.manifest("vm");
    EXPECT_TRUE(m.is_ok());
    return m.is_ok() ? test::read_whole(s.image_path(*m)) : std::vector<std::byte>{};
  }
  uint64_t epoch() {
    SnapshotStore s(dir_.path());
    auto m = s.manifest("vm");
    return m.is_ok() ? m->epoch : 0;
  }

  test::TempDir dir_;
  test::TempDir state_;
  transport::MemNetwork net_;
  Logger log_{LogLevel::error};
  proto::PeerKey key_ = proto::PeerKey::generate();
  std::unique_ptr<Daemon> daemon_;
  std::thread thread_;
  std::vector<std::byte> img_ = test::random_image(kPages, 1, 4);
};

TEST_F(PushMem, FullThenIncrementalLandsTheExactImage) {
  auto r1 = push(img_, opts());
  ASSERT_TRUE(r1.is_ok()) << r1.status().message();
  EXPECT_EQ(r1->mode, "full");
  EXPECT_EQ(r1->pages_sent + r1->pages_zero, kPages);
  EXPECT_EQ(snapshot_bytes(), img_);

  test::fill_page(img_.data() + 10 * 4096, 1000);
  test::fill_page(img_.data() + 1500 * 4096, 1001);
  std::memset(img_.data() + 11 * 4096, 0, 4096);  // a data page that became zero
  auto r2 = push(img_, opts());
  ASSERT_TRUE(r2.is_ok()) << r2.status().message();
  EXPECT_EQ(r2->mode, "incremental");
  EXPECT_EQ(r2->base_source, "local-state");
  EXPECT_EQ(r2->pages_sent, 2U);
  EXPECT_EQ(r2->pages_zero, 1U);
  EXPECT_EQ(r2->pages_skipped, kPages - 3);
  EXPECT_LT(r2->wire_bytes, 3 * 4096 + 4096);  // the pages plus framing, nothing else
  EXPECT_EQ(snapshot_bytes(), img_);
  EXPECT_EQ(epoch(), 2U);
}

TEST_F(PushMem, WithoutLocalStateTheReceiversTableIsUsed) {
  PushOptions o = opts(3);
  o.state_file.clear();
  ASSERT_TRUE(push(img_, o).is_ok());
  test::fill_page(img_.data() + 700 * 4096, 5);
  auto r = push(img_, o);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->base_source, "receiver-table");
  EXPECT_EQ(r->pages_sent, 1U);
  EXPECT_EQ(snapshot_bytes(), img_);
}

// The daemon's side of the wire is protected too: its digest table (32 KiB
// for 8 MiB), altered on the way, fails the sender's channel before a page is planned from it.
TEST_F(PushMem, ACorruptedTableFromTheDaemonFailsThePushAndNothingChanges) {
  PushOptions o = opts(1);
  o.state_file.clear();
  ASSERT_TRUE(push(img_, o).is_ok());  // the daemon accepts connections 0 (control) and 1 (stream)
  const auto committed = snapshot_bytes();
  test::fill_page(img_.data() + 700 * 4096, 5);
  net_.set_server_faults(2, {.corrupt_at_byte = 20000});  // the next control connection, inside TABLE
  auto r = push(img_, o);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("failed authentication"), std::string::npos) << r.status().message();
  EXPECT_EQ(snapshot_bytes(), committed);
}

TEST_F(PushMem, DirtyBitmapIsTrustedOnlyAgainstAProvenBase) {
  ASSERT_TRUE(push(img_, opts(2)).is_ok());
  test::fill_page(img_.data() + 300 * 4096, 6);
  PageBitmap dirty(kPages);
  dirty.set(300);
  PushOptions o = opts(2);
  o.dirty = &dirty;
  auto r = push(img_, o);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->pages_sent, 1U);
  EXPECT_TRUE(r->fallback.empty());
  EXPECT_EQ(snapshot_bytes(), img_);

  // Another pusher without the state: its bitmap proves nothing, digests decide.
  test::fill_page(img_.data() + 301 * 4096, 7);  // changed, yet not in the bitmap
  o.state_file = state_.path() + "/other.state";
  r = push(img_, o);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_FALSE(r->fallback.empty());
  EXPECT_EQ(r->pages_sent, 1U);  // only 301 differs from the receiver's base
  EXPECT_EQ(snapshot_bytes(), img_);
}

TEST_F(PushMem, CutConnectionLeavesTheCommittedEpochIntact) {
  ASSERT_TRUE(push(img_, opts()).is_ok());
  const auto committed = snapshot_bytes();
  auto next = test::random_image(kPages, 50);
  net_.set_client_faults(3, {.cut_after_bytes = 3U << 20});  // push 2: control=2, stream=3
  auto r = push(next, opts());
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("cut"), std::string::npos) << r.status().message();
  EXPECT_EQ(snapshot_bytes(), committed);
  EXPECT_EQ(epoch(), 1U);
  auto again = push(next, opts());  // and the next push succeeds
  ASSERT_TRUE(again.is_ok()) << again.status().message();
  EXPECT_EQ(snapshot_bytes(), next);
}

// A flipped bit on the wire fails the secure channel's record tag (before the
// frame CRC would see it).
TEST_F(PushMem, CorruptedPayloadFailsTheChannelsAuthenticationAndIsRolledBack) {
  ASSERT_TRUE(push(img_, opts()).is_ok());
  const auto committed = snapshot_bytes();
  auto next = test::random_image(kPages, 51);
  net_.set_client_faults(3, {.corrupt_at_byte = 2U << 20});
  auto r = push(next, opts());
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("failed authentication"), std::string::npos) << r.status().message();
  EXPECT_EQ(snapshot_bytes(), committed);
}

TEST_F(PushMem, LostBytesDesynchroniseTheStreamAndAreRefused) {
  ASSERT_TRUE(push(img_, opts()).is_ok());
  const auto committed = snapshot_bytes();
  auto next = test::random_image(kPages, 52);
  net_.set_client_faults(3, {.drop_from_byte = 1U << 20, .drop_bytes = 100});
  auto r = push(next, opts());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(snapshot_bytes(), committed);
}

TEST_F(PushMem, DelayedLinkStillDelivers) {
  net_.set_client_faults(1, {.delay_us_per_post = 200});
  auto r = push(img_, opts());
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(snapshot_bytes(), img_);
}

TEST_F(PushMem, SizeMismatchWithTheBaseIsAnError) {
  ASSERT_TRUE(push(img_, opts()).is_ok());
  auto bigger = test::random_image(kPages * 2, 3);
  auto r = push(bigger, opts());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::mismatch);
  EXPECT_NE(r.status().message().find("size mismatch"), std::string::npos);
  EXPECT_EQ(snapshot_bytes(), img_);
  PushOptions o = opts();
  o.force_full = true;  // replacing on purpose works
  ASSERT_TRUE(push(bigger, o).is_ok());
  EXPECT_EQ(snapshot_bytes(), bigger);
}

TEST_F(PushMem, BadNameIsRefusedByTheDaemon) {
  PushOptions o = opts();
  o.name = "../escape";
  auto r = push(img_, o);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("bad snapshot name"), std::string::npos) << r.status().message();
}

TEST_F(PushMem, UnreachableDaemonIsNamed) {
  PushOptions o = opts();
  o.to = *parse_endpoint("bnf+mem:nobody");
  auto r = push(img_, o);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::unreachable);
}

TEST_F(PushMem, SecondPushWhileOneIsWritingIsBusy) {
  ASSERT_TRUE(push(img_, opts()).is_ok());
  SnapshotStore other(dir_.path());
  auto m = other.manifest("vm");
  WritePlan p;
  p.full = false;
  p.size_bytes = kPages * 4096;
  p.key = m->key;
  p.base_lineage = m->lineage;
  p.base_epoch = m->epoch;
  auto holder = other.begin_write("vm", p);  // someone else is writing
  ASSERT_TRUE(holder.is_ok()) << holder.status().message();
  test::fill_page(img_.data(), 9);
  auto r = push(img_, opts());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::busy);
}

// Raw protocol: a peer speaking another version gets a reason, not silence.
TEST_F(PushMem, WrongProtocolVersionIsRefusedWithAReason) {
  proto::AuthenticatedTransport t(net_.transport(), key_);
  auto c = t.connect(*parse_endpoint("bnf+mem:daemon"));
  ASSERT_TRUE(c.is_ok());
  nlohmann::json hello = {{"version", proto::kVersion + 1},
                          {"sender", "x"},
                          {"name", "vm"},
                          {"size_bytes", 4096},
                          {"page_size", 4096},
                          {"streams", 1}};
  ASSERT_TRUE(proto::send_control(**c, proto::FrameType::hello, hello).is_ok());
  auto f = proto::recv_frame(**c);
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), Errc::version);
  EXPECT_NE(f.status().message().find("unsupported protocol version " + std::to_string(proto::kVersion + 1)),
            std::string::npos);
}

TEST_F(PushMem, GarbageInsteadOfAFrameIsRefused) {
  auto t = net_.transport();
  auto c = t->connect(*parse_endpoint("bnf+mem:daemon"));
  ASSERT_TRUE(c.is_ok());
  std::vector<std::byte> junk(64, std::byte{0x47});
  ASSERT_TRUE(transport::post_bytes(**c, junk).is_ok());
  auto f = proto::recv_frame(**c);
  ASSERT_FALSE(f.is_ok());
  EXPECT_NE(f.status().message().find("magic"), std::string::npos) << f.status().message();
}

// A pusher without this daemon's peer key is refused before it can act, and
// the committed snapshot stays as it was.
TEST_F(PushMem, APusherWithAnotherPeerKeyIsRefusedAndNothingChanges) {
  ASSERT_TRUE(push(img_, opts()).is_ok());
  const std::vector<std::byte> before = snapshot_bytes();
  const uint64_t epoch_before = epoch();
  test::fill_page(img_.data(), 77);
  proto::AuthenticatedTransport stranger(net_.transport(), proto::PeerKey::generate());
  auto r = push_image(stranger, img_, opts());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Errc::denied);
  EXPECT_NE(r.status().message().find("peer keys differ"), std::string::npos) << r.status().message();
  EXPECT_EQ(snapshot_bytes(), before);
  EXPECT_EQ(epoch(), epoch_before);
}

// A HELLO and a full BEGIN declaring `size_bytes`, written by hand; the
// daemon's answer to BEGIN: ok (READY) or the reason of its ERROR.
Status declare_image(transport::MemNetwork& net, const proto::PeerKey& key, uint64_t size_bytes) {
  proto::AuthenticatedTransport t(net.transport(), key);
  BNF_ASSIGN_OR_RETURN(auto c, t.connect(*parse_endpoint("bnf+mem:daemon")));
  nlohmann::json hello = {{"version", proto::kVersion}, {"sender", "x"},     {"name", "vm"},
                          {"size_bytes", size_bytes},   {"page_size", 4096}, {"streams", 1}};
  BNF_TRY(proto::send_control(*c, proto::FrameType::hello, hello));
  BNF_ASSIGN_OR_RETURN(proto::Frame f, proto::expect_frame(*c, proto::FrameType::accept));
  if (f.header.type == proto::FrameType::accept) {
    BNF_TRY(proto::send_control(*c, proto::FrameType::begin, {{"mode", "full"}}));
    BNF_ASSIGN_OR_RETURN(f, proto::expect_frame(*c, proto::FrameType::ready));
  }
  if (f.header.type != proto::FrameType::error) return Status::ok();
  BNF_ASSIGN_OR_RETURN(nlohmann::json j, proto::parse_json_meta(f));
  return {Errc::denied, j.value("reason", std::string("no reason"))};
}

TEST_F(PushMem, AnImageOverTheMaximumIsRefusedBeforeAnythingIsAllocated) {
  ASSERT_TRUE(push(img_, opts()).is_ok());
  const std::vector<std::byte> committed = snapshot_bytes();
  Status st = declare_image(net_, key_, (64ULL << 40) + 4096);
  EXPECT_NE(st.message().find("over the maximum of 64 TiB"), std::string::npos) << st.message();
  EXPECT_EQ(snapshot_bytes(), committed);
  test::fill_page(img_.data(), 7);
  ASSERT_TRUE(push(img_, opts()).is_ok());  // the daemon is still there
  EXPECT_EQ(snapshot_bytes(), img_);
}

TEST_F(PushMem, AnImageLargerThanTheFreeSpaceIsRefusedNamingBoth) {
  struct statvfs vfs {};
  ASSERT_EQ(::statvfs(dir_.path().c_str(), &vfs), 0);
  const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  const uint64_t declared = (free_bytes + (1ULL << 30)) & ~4095ULL;
  if (declared > (64ULL << 40)) GTEST_SKIP() << "this filesystem has more free space than the largest image";
  Status st = declare_image(net_, key_, declared);
  EXPECT_NE(st.message().find("not enough space for a"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(" free in "), std::string::npos) << st.message();
  ASSERT_TRUE(push(img_, opts()).is_ok());
  EXPECT_EQ(snapshot_bytes(), img_);
}

// The daemon's bounds, short enough for a unit test.
class PushMemLimits : public PushMem {
 protected:
  DaemonLimits limits() override {
    DaemonLimits l;
    l.handshake_deadline = std::chrono::milliseconds(300);
    l.peer_timeout = std::chrono::milliseconds(500);
    l.pre_auth = {.per_source = 2, .total = 3};
    return l;
  }
  std::unique_ptr<transport::Connection> raw_connection() {
    auto c = net_.transport()->connect(*parse_endpoint("bnf+mem:daemon"));
    EXPECT_TRUE(c.is_ok());
    return std::move(c).value();
  }
  // Seconds until the daemon ends `c` (an ERROR frame, or its end).
  static double seconds_until_closed(transport::Connection& c) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(proto::recv_frame(c).is_ok());
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

TEST_F(PushMemLimits, AConnectionThatDoesNotAuthenticateIsClosedAtTheDeadline) {
  auto silent = raw_connection();
  const double s = seconds_until_closed(*silent);
  EXPECT_GE(s, 0.2);
  EXPECT_LT(s, 2.0);
}

TEST_F(PushMemLimits, ConnectionsOverTheCapAreClosedAtOnceAndAuthenticatedOnesDoNotCount) {
  ASSERT_TRUE(push(img_, opts()).is_ok());  // two connections, one after the other authenticated
  auto a = raw_connection();
  auto b = raw_connection();
  auto over = raw_connection();  // a third from the same source: over the per-source cap of 2
  EXPECT_LT(seconds_until_closed(*over), 0.2);
  a.reset();
  b.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // their workers see the end
  test::fill_page(img_.data(), 5);
  auto r = push(img_, opts(2));  // the control connection authenticates, then two streams
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(snapshot_bytes(), img_);
}

// A sender that goes silent after READY holds the snapshot's lock only for the
// peer timeout; its partial epoch is rolled back.
TEST_F(PushMemLimits, ASenderSilentAfterReadyLosesTheLockWithinThePeerTimeout) {
  ASSERT_TRUE(push(img_, opts()).is_ok());
  const std::vector<std::byte> committed = snapshot_bytes();
  proto::AuthenticatedTransport t(net_.transport(), key_);
  auto c = t.connect(*parse_endpoint("bnf+mem:daemon"));
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  nlohmann::json hello = {{"version", proto::kVersion},  {"sender", "x"},     {"name", "vm"},
                          {"size_bytes", kPages * 4096}, {"page_size", 4096}, {"streams", 1}};
  ASSERT_TRUE(proto::send_control(**c, proto::FrameType::hello, hello).is_ok());
  ASSERT_TRUE(proto::expect_frame(**c, proto::FrameType::accept).is_ok());
  ASSERT_TRUE(proto::send_control(**c, proto::FrameType::begin, {{"mode", "full"}}).is_ok());
  ASSERT_TRUE(proto::expect_frame(**c, proto::FrameType::ready).is_ok());
  const double s = seconds_until_closed(**c);  // silent from here
  EXPECT_GE(s, 0.4);
  EXPECT_LT(s, 2.0);
  EXPECT_EQ(snapshot_bytes(), committed);
  test::fill_page(img_.data(), 6);
  auto r = push(img_, opts());
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(snapshot_bytes(), img_);
}

// Data streams running keep the quiet control connection alive past the peer timeout.
TEST_F(PushMemLimits, ATransferLongerThanThePeerTimeoutSucceeds) {
  net_.set_client_faults(1, {.delay_us_per_post = 100000});  // the data stream: ~1 s in all
  const auto t0 = std::chrono::steady_clock::now();
  auto r = push(img_, opts());
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_GT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0.6);
  EXPECT_EQ(snapshot_bytes(), img_);
}

}  // namespace
}  // namespace bnf
