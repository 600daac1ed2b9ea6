// The settle of a direct trip (both halves, over the in-memory transport): the
// destination's image ends up exactly the source's stopped VM, only the pages
// that differ travel, and a broken connection fails both sides instead of
// hanging them.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "snapshot/snapshot_store.hpp"
#include "test_util.hpp"
#include "transport/mem/mem_transport.hpp"
#include "vm/direct_arrival.hpp"
#include "vm/direct_departure.hpp"

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
  void run(Result<Digest>& dest, Result<uint64_t>& src) {
    std::thread d([&] {
      auto c = (**listener_)->accept();
      dest = c.is_ok() ? settle_with_source(**c, *writer_, h_) : Result<Digest>(c.status());
    });
    auto c = transport_->connect(*parse_endpoint("bnf+mem:dest"));
    const DigestTable table = DigestTable::compute(h_, stopped_, 4096, 1);
    src = c.is_ok() ? settle_with_destination(**c, h_, table, stopped_) : Result<uint64_t>(c.status());
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

TEST_F(DirectSettle, NothingTravelsWhenQemuDeliveredEverything) {
  stopped_ = landed_;
  Result<Digest> dest = Status(Errc::internal, "not run");
  Result<uint64_t> src = Status(Errc::internal, "not run");
  run(dest, src);
  ASSERT_TRUE(src.is_ok()) << src.status().message();
  ASSERT_TRUE(dest.is_ok()) << dest.status().message();
  EXPECT_EQ(*src, 0U);
}

TEST_F(DirectSettle, ACutConnectionFailsBothHalves) {
  net_.set_client_faults(0, {.cut_after_bytes = 4096 + 100});  // inside the first resent pages
  Result<Digest> dest = Status(Errc::internal, "not run");
  Result<uint64_t> src = Status(Errc::internal, "not run");
  run(dest, src);
  EXPECT_FALSE(dest.is_ok());
  EXPECT_FALSE(src.is_ok());
}

}  // namespace
}  // namespace bnf::qemu
