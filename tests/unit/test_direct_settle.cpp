// The settle of a direct trip (both halves, over the in-memory transport): the
// destination's image ends up exactly the source's stopped VM, only the pages
// that differ travel, and a broken connection fails both sides instead of
// hanging them. And a whole direct arrival over real sockets: the stream keeps
// being read while the image is settled.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <future>
#include <string>
#include <thread>

#include "launch/qemu_process.hpp"
#include "protocol/control.hpp"
#include "qmp/qmp_client.hpp"
#include "snapshot/snapshot_store.hpp"
#include "stream_builder.hpp"
#include "test_util.hpp"
#include "transport/mem/mem_transport.hpp"
#include "vm/destination/direct_arrival.hpp"
#include "vm/source/direct_departure.hpp"

namespace bnf::qemu {
namespace {

constexpr uint64_t kPages = 1000;  // the last 256-page chunk is short

class DirectSettle : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(store_.open().is_ok());
    WritePlan p;
    p.full = true;
    p.size_bytes = kPages * 4096;
    p.key = key_;
    p.peer = "test";
    auto w = store_.begin_write("vm", p);
    ASSERT_TRUE(w.is_ok()) << w.status().message();
    writer_ = std::move(*w);
    // What landed from QEMU's stream...
    const PageRun all{0, kPages};
    ASSERT_TRUE(writer_->prepare_overwrite(0, std::span(&all, 1)).is_ok());
    std::memcpy(writer_->page_addr(0), landed_.data(), landed_.size());
    writer_->record_landed(std::span(&all, 1), h_);
    // ... and the stopped VM, which QEMU did not quite deliver.
    stopped_ = landed_;
    for (uint64_t p : {5, 300, 301, 999}) test::fill_page(stopped_.data() + p * 4096, 1000 + p);
    std::memset(stopped_.data() + 600 * 4096, 0, 4096);
    ASSERT_TRUE(listener_ && listener_->is_ok());
  }

  // Runs both halves; the destination's on a thread.
  void run(Result<Digest>& dest, Result<uint64_t>& src, const PageBitmap* final_pages = nullptr) {
    std::thread d([&] {
      auto c = (**listener_)->accept();
      dest = c.is_ok() ? settle_with_source(**c, *writer_, h_) : Result<Digest>(c.status());
    });
    auto c = transport_->connect(*parse_endpoint("bnf+mem:dest"));
    const DigestTable table = DigestTable::compute(h_, stopped_, 4096, 1);
    src = c.is_ok() ? settle_with_destination(**c, h_, table, final_pages, stopped_) : Result<uint64_t>(c.status());
    if (!src.is_ok() && c.is_ok()) (*c)->shutdown();
    d.join();
  }

  test::TempDir dir_;
  SnapshotStore store_{dir_.path()};
  DigestKey key_ = random_digest_key();
  PageDigester h_{key_};
  std::vector<std::byte> landed_ = test::random_image(kPages, 3, 7);
  std::vector<std::byte> stopped_;
  std::unique_ptr<SnapshotWriter> writer_;
  transport::MemNetwork net_;
  std::unique_ptr<transport::Transport> transport_ = net_.transport();
  std::optional<Result<std::unique_ptr<transport::Listener>>> listener_ =
      transport_->listen(*parse_endpoint("bnf+mem:dest"));
};

TEST_F(DirectSettle, OnlyThePagesThatDifferTravelAndTheImageIsTheStoppedVm) {
  Result<Digest> dest = Status(Errc::internal, "not run");
  Result<uint64_t> src = Status(Errc::internal, "not run");
  run(dest, src);
  ASSERT_TRUE(src.is_ok()) << src.status().message();
  ASSERT_TRUE(dest.is_ok()) << dest.status().message();
  EXPECT_EQ(*src, 5U);  // pages 5, 300-301, 600 (now zero), 999
  EXPECT_EQ(*dest, DigestTable::compute(h_, stopped_, 4096, 1).root(h_));
  EXPECT_EQ(std::memcmp(writer_->page_addr(0), stopped_.data(), stopped_.size()), 0);
}

// Where the source's digests are final only for some pages (the guest wrote
// them, or they were hashed ahead), only those are compared and fixed: by
// chunk digest where a whole chunk is final, page by page where part of one
// is; the destination keeps what it holds elsewhere (VM_END without a root).
TEST_F(DirectSettle, OnlyPagesWithFinalDigestsAreComparedInTheDowntime) {
  PageBitmap final_pages(kPages);
  final_pages.set_range(0, kSettleChunkPages);  // chunk 0, whole: page 5 differs there
  final_pages.set(300);                         // in chunk 1 with 301, which is not final
  final_pages.set(600);                         // chunk 2; chunk 3 (999) has none
  Result<Digest> dest = Status(Errc::internal, "not run");
  Result<uint64_t> src = Status(Errc::internal, "not run");
  run(dest, src, &final_pages);
  ASSERT_TRUE(src.is_ok()) << src.status().message();
  ASSERT_TRUE(dest.is_ok()) << dest.status().message();
  EXPECT_EQ(*src, 3U);  // 5, 300, 600
  auto page = [&](const std::vector<std::byte>& image, uint64_t p) {
    return std::memcmp(writer_->page_addr(p), image.data() + p * 4096, 4096) == 0;
  };
  for (uint64_t p : {5, 300, 600}) EXPECT_TRUE(page(stopped_, p)) << p;
  for (uint64_t p : {301, 999}) EXPECT_TRUE(page(landed_, p)) << p;
  EXPECT_EQ(*dest, writer_->table().root(h_));  // what it holds stands
  EXPECT_NE(*dest, DigestTable::compute(h_, stopped_, 4096, 1).root(h_));
}

TEST_F(DirectSettle, NothingTravelsWhenQemuDeliveredEverything) {
  stopped_ = landed_;
  Result<Digest> dest = Status(Errc::internal, "not run");
  Result<uint64_t> src = Status(Errc::internal, "not run");
  run(dest, src);
  ASSERT_TRUE(src.is_ok()) << src.status().message();
  ASSERT_TRUE(dest.is_ok()) << dest.status().message();
  EXPECT_EQ(*src, 0U);
}

// VM_EXPECT, sent as the tail still crosses, names the stopped VM's root: a
// destination that holds it says so and goes on at once, without waiting for
// a comparison and VM_END (the round trip that was in every downtime).
TEST_F(DirectSettle, AMatchingRootSettlesInOneMessageEachWay) {
  std::promise<Result<Digest>> dest;
  std::thread d([&] {
    auto c = (**listener_)->accept();
    dest.set_value(c.is_ok() ? settle_with_source(**c, *writer_, h_) : Result<Digest>(c.status()));
  });
  auto c = transport_->connect(*parse_endpoint("bnf+mem:dest"));
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  const Digest root = DigestTable::compute(h_, landed_, 4096, 1).root(h_);
  ASSERT_TRUE(proto::send_control(**c, proto::FrameType::vm_expect, {{"root", digest_hex(root)}}).is_ok());
  auto landed = proto::expect_frame(**c, proto::FrameType::vm_landed);
  ASSERT_TRUE(landed.is_ok()) << landed.status().message();
  EXPECT_EQ(landed->header.payload_len, 0U);
  auto settled = dest.get_future();
  const bool returned = settled.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  if (!returned) (*c)->shutdown();  // it waits for more: fail, not hang
  d.join();
  ASSERT_TRUE(returned) << "the destination waited for more than VM_EXPECT";
  Result<Digest> r = settled.get();
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(*r, root);
}

TEST_F(DirectSettle, ACutConnectionFailsBothHalves) {
  net_.set_client_faults(0, {.cut_after_bytes = 4096 + 100});  // inside the first resent pages
  Result<Digest> dest = Status(Errc::internal, "not run");
  Result<uint64_t> src = Status(Errc::internal, "not run");
  run(dest, src);
  EXPECT_FALSE(dest.is_ok());
  EXPECT_FALSE(src.is_ok());
}

// A QEMU stream in the 7.2 format: the RAM section (ram0 of `pages` pages),
// its END section with page 0 filled with `fill`, then `device` bytes of
// device state.
std::string direct_stream(uint64_t pages, char fill, size_t device) {
  test::Builder b;
  b.header().ram_start(pages * 4096).be64(0x10).footer();
  b.u8(0x03).be32(2).be64(0x08).str8("ram0").page(fill).be64(0x10).footer();  // END ram: the final pass
  b.u8(0x04).be32(3).str8("dev").be32(0).be32(1).raw(std::string(device, 'D'));
  return b.s;
}

// The source QEMU writes its device state holding the lock its QMP needs; a
// source daemon that was asking QMP something then settles only once all of it
// is written. A device state bigger than the socket buffers must therefore be
// read while the destination waits for the settle, or both stall.
TEST_F(DirectSettle, DeviceStateBiggerThanTheSocketBuffersIsReadWhileTheImageSettles) {
  constexpr size_t kDevice = 8U << 20;
  ::signal(SIGPIPE, SIG_IGN);  // a stalled run fails on its assertions, not by a signal
  const std::string stream = direct_stream(kPages, 'x', kDevice);
  int qemu_stream[2];  // source QEMU -> destination daemon
  int feed[2];         // destination daemon -> destination QEMU
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qemu_stream), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, feed), 0);
  std::atomic<bool> written{false};
  std::thread source_qemu([&] {
    for (size_t off = 0; off < stream.size();) {
      const ssize_t n = ::write(qemu_stream[0], stream.data() + off, stream.size() - off);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
    written = true;
  });
  std::atomic<size_t> qemu_got{0};
  std::thread dest_qemu([&] {
    char buf[65536];
    ssize_t n = 0;
    while ((n = ::read(feed[1], buf, sizeof buf)) > 0) qemu_got += static_cast<size_t>(n);
  });
  Result<uint64_t> src = Status(Errc::internal, "not run");
  std::thread source_daemon([&] {
    auto c = transport_->connect(*parse_endpoint("bnf+mem:dest"));
    for (int i = 0; i < 500 && !written; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!written) {  // stalled: free everyone, the test fails below
      ::shutdown(qemu_stream[0], SHUT_RDWR);
      if (c.is_ok()) (*c)->shutdown();
      return;
    }
    stopped_ = landed_;
    std::memset(stopped_.data(), 'x', 4096);
    const DigestTable table = DigestTable::compute(h_, stopped_, 4096, 1);
    src = c.is_ok() ? settle_with_destination(**c, h_, table, nullptr, stopped_) : Result<uint64_t>(c.status());
    ::shutdown(qemu_stream[0], SHUT_WR);  // QEMU ends its stream once ours loaded it
  });
  auto c = (**listener_)->accept();
  ASSERT_TRUE(c.is_ok());
  auto arrival = receive_direct(
      **c, *writer_, h_, [&]() -> Result<int> { return feed[0]; }, qemu_stream[1]);
  source_daemon.join();
  source_qemu.join();
  ::shutdown(feed[0], SHUT_WR);
  dest_qemu.join();
  for (int fd : {qemu_stream[0], qemu_stream[1], feed[0], feed[1]}) ::close(fd);
  ASSERT_TRUE(written) << "the destination stopped reading the stream while it settled";
  ASSERT_TRUE(src.is_ok()) << src.status().message();
  ASSERT_TRUE(arrival.is_ok()) << arrival.status().message();
  EXPECT_EQ(arrival->root, DigestTable::compute(h_, stopped_, 4096, 1).root(h_));
  EXPECT_GE(qemu_got.load(), kDevice);  // all of the device state reached our QEMU
}

// The write tracker is armed only once QEMU's migration left its setup
// (arming stops QEMU's main thread, which the setup needs): against a real
// QEMU migrating slowly, the wait returns with the migration active.
TEST(DirectTrip, AwaitPassStartedReturnsOnceQemusMigrationLeftItsSetup) {
  if (!test::have_qemu()) GTEST_SKIP() << "qemu-system-x86_64 not installed";
  test::TempDir dir;
  const std::string sock = dir.path() + "/qmp.sock";
  auto qemu = QemuProcess::spawn(test::bare_qemu(sock, 64), dir.path() + "/stderr");
  ASSERT_TRUE(qemu.is_ok()) << qemu.status().message();
  auto qmp = QmpClient::connect(sock, std::chrono::seconds(10));
  ASSERT_TRUE(qmp.is_ok()) << qmp.status().message();
  ASSERT_TRUE(qmp->execute("migrate-set-parameters", {{"max-bandwidth", 1 << 20}}).is_ok());  // 64 MiB: a minute
  ASSERT_TRUE(qmp->execute("migrate", {{"uri", "exec:cat > /dev/null"}}).is_ok());
  ASSERT_TRUE(await_pass_started(*qmp).is_ok());
  auto m = qmp->execute("query-migrate");
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  EXPECT_EQ(m->value("status", std::string()), "active");
  (void)qmp->execute("migrate_cancel");
}

}  // namespace
}  // namespace bnf::qemu
