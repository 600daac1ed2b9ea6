// The snapshot store: commits, verification, and no torn snapshot ever.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "bitmap/file_holes.hpp"
#include "common/files.hpp"
#include "snapshot/snapshot_store.hpp"
#include "test_util.hpp"

namespace bnf {
namespace {

constexpr uint64_t kPages = 256;

struct StoreFixture : ::testing::Test {
  test::TempDir dir;
  SnapshotStore store{dir.path()};
  DigestKey key = random_digest_key();
  PageDigester h{key};
  std::vector<std::byte> img = test::random_image(kPages, 4, 5);

  void SetUp() override { ASSERT_TRUE(store.open().is_ok()); }

  WritePlan full_plan() {
    WritePlan p;
    p.full = true;
    p.size_bytes = kPages * 4096;
    p.key = key;
    p.peer = "test";
    return p;
  }
  WritePlan incr_plan(const Manifest& m, unsigned streams = 1) {
    WritePlan p = full_plan();
    p.full = false;
    p.base_lineage = m.lineage;
    p.base_epoch = m.epoch;
    p.streams = streams;
    return p;
  }
  // Lands `pages` of `src` through the writer, as the receiver does.
  static void land(SnapshotWriter& w, const std::vector<std::byte>& src, std::vector<PageRun> runs,
                   const PageDigester& h) {
    ASSERT_TRUE(w.prepare_overwrite(0, runs).is_ok());
    for (const PageRun& r : runs) std::memcpy(w.page_addr(r.first), src.data() + r.first * 4096, r.count * 4096);
    w.record_landed(runs, h);
  }
  Manifest commit_full() { return commit_full_into(store); }
  Manifest commit_full_into(SnapshotStore& into) {
    auto w = into.begin_write("vm", full_plan());
    EXPECT_TRUE(w.is_ok()) << w.status().message();
    land(**w, img, {{0, kPages}}, h);
    auto m = (*w)->commit(DigestTable::compute(h, img, 4096, 1).root(h), h);
    EXPECT_TRUE(m.is_ok()) << m.status().message();
    return *m;
  }
  std::vector<std::byte> image_bytes(const Manifest& m) { return test::read_whole(store.image_path(m)); }
};

TEST_F(StoreFixture, FullCommitIsListedAndVerifies) {
  Manifest m = commit_full();
  EXPECT_EQ(m.epoch, 1U);
  EXPECT_EQ(image_bytes(m), img);
  auto list = store.list();
  ASSERT_TRUE(list.is_ok());
  ASSERT_EQ(list->size(), 1U);
  EXPECT_EQ((*list)[0].name, "vm");
  auto v = store.verify("vm");
  ASSERT_TRUE(v.is_ok());
  EXPECT_TRUE(v->ok());
}

// Guest RAM, its digests and the key in the manifest are the store's user's
// alone, whatever the umask: files 0600, folders 0700.
TEST_F(StoreFixture, FilesArePrivateWhateverTheUmask) {
  const std::string state = dir.path() + "/open-umask";
  const mode_t umask_was = ::umask(0);
  SnapshotStore open_store(state);
  ASSERT_TRUE(open_store.open().is_ok());
  Manifest m1 = commit_full_into(open_store);
  auto w = open_store.begin_write("vm", incr_plan(m1));  // its undo journal is there while it writes
  ::umask(umask_was);
  ASSERT_TRUE(w.is_ok()) << w.status().message();
  size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(state)) {
    if (e.is_symlink()) continue;
    const auto perms = static_cast<unsigned>(e.status().permissions());
    EXPECT_EQ(perms, e.is_directory() ? 0700U : 0600U) << e.path();
    files += e.is_regular_file() ? 1 : 0;
  }
  EXPECT_GE(files, 4U);  // image, manifest, digest table, journal (and the lock)
  EXPECT_TRUE(std::filesystem::exists(open_store.dir_of("vm") + "/journal.0"));
}

TEST_F(StoreFixture, VerifyCatchesAPageChangedBehindTheStoresBack) {
  Manifest m = commit_full();
  std::fstream f(store.image_path(m), std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(4096 * 9 + 100);
  f.put('\x42');
  f.close();
  auto v = store.verify("vm");
  ASSERT_TRUE(v.is_ok());
  EXPECT_FALSE(v->ok());
  EXPECT_EQ(v->pages_mismatched, 1U);
}

// The base check proves the base during the transfer, including pages that are
// overwritten before the check's thread reaches them.
class BaseCheckTest : public StoreFixture {
 protected:
  Manifest tampered_base(uint64_t page) {
    Manifest m = commit_full();
    std::fstream f(store.image_path(m), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(4096 * page + 100));
    f.put('\x42');
    return m;
  }
};

TEST_F(BaseCheckTest, IntactBaseIsProvenAndCommits) {
  Manifest m1 = commit_full();
  auto next = img;
  test::fill_page(next.data() + 7 * 4096, 99);
  auto w = store.begin_write("vm", incr_plan(m1));
  ASSERT_TRUE(w.is_ok());
  (*w)->start_base_check(h);
  land(**w, next, {{7, 1}}, h);
  EXPECT_EQ((*w)->finish_base_check().value(), 0U);
  EXPECT_TRUE((*w)->commit(DigestTable::compute(h, next, 4096, 1).root(h), h).is_ok());
}

TEST_F(BaseCheckTest, ChangedPageThatIsNotLandedIsFound) {
  Manifest m1 = tampered_base(9);
  auto w = store.begin_write("vm", incr_plan(m1));
  ASSERT_TRUE(w.is_ok());
  (*w)->start_base_check(h);
  land(**w, img, {{7, 1}}, h);
  EXPECT_EQ((*w)->finish_base_check().value(), 1U);
  EXPECT_FALSE((*w)->commit(DigestTable::compute(h, img, 4096, 1).root(h), h).is_ok());
}

TEST_F(BaseCheckTest, ChangedPageIsFoundEvenWhenLandedOver) {
  // The page is overwritten with the right bytes at once: only its old bytes
  // (checked before the landing) show that the base was not what it claimed.
  Manifest m1 = tampered_base(kPages - 1);
  auto w = store.begin_write("vm", incr_plan(m1));
  ASSERT_TRUE(w.is_ok());
  (*w)->start_base_check(h);
  land(**w, img, {{kPages - 1, 1}}, h);
  EXPECT_EQ((*w)->finish_base_check().value(), 1U);
}

// A proof made while the VM is away (base_proof.hpp) replaces the check
// during the transfer only if nothing touched the image since it began.
class BaseProofTest : public StoreFixture {
 protected:
  void prove(const std::string& name) {
    ASSERT_TRUE(store.prove_ahead(name).is_ok());
    // The proof runs on its own thread; a writer that starts before it ends
    // falls back to the check during the transfer.
    for (int i = 0; i < 5000 && store.proof_running(name); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_FALSE(store.proof_running(name));
  }
};

TEST_F(BaseProofTest, UntouchedBaseProvenAheadNeedsNoCheck) {
  Manifest m1 = commit_full();
  prove("vm");
  auto next = img;
  test::fill_page(next.data() + 7 * 4096, 99);
  auto w = store.begin_write("vm", incr_plan(m1));
  ASSERT_TRUE(w.is_ok());
  EXPECT_TRUE((*w)->base_proven_ahead()) << (*w)->base_proof_doubt();
  (*w)->start_base_check(h);
  EXPECT_FALSE((*w)->base_check_pending());
  land(**w, next, {{7, 1}}, h);
  EXPECT_EQ((*w)->finish_base_check().value(), 0U);
  EXPECT_TRUE((*w)->commit(DigestTable::compute(h, next, 4096, 1).root(h), h).is_ok());
}

TEST_F(BaseProofTest, ImageWrittenAfterTheProofFallsBackToTheCheck) {
  Manifest m1 = commit_full();
  prove("vm");
  {
    std::fstream f(store.image_path(m1), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 * 9 + 100);
    f.put('\x42');
  }
  auto w = store.begin_write("vm", incr_plan(m1));
  ASSERT_TRUE(w.is_ok());
  EXPECT_FALSE((*w)->base_proven_ahead());
  EXPECT_NE((*w)->base_proof_doubt().find("after the proof began"), std::string::npos) << (*w)->base_proof_doubt();
  (*w)->start_base_check(h);
  EXPECT_EQ((*w)->finish_base_check().value(), 1U);
}

TEST_F(BaseProofTest, ABaseChangedBeforeTheProofIsNotProven) {
  Manifest m1 = commit_full();
  {
    std::fstream f(store.image_path(m1), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 * 3 + 1);
    f.put('\x42');
  }
  prove("vm");
  auto w = store.begin_write("vm", incr_plan(m1));
  ASSERT_TRUE(w.is_ok());
  EXPECT_FALSE((*w)->base_proven_ahead());
  (*w)->start_base_check(h);
  EXPECT_EQ((*w)->finish_base_check().value(), 1U);
}

uint64_t zero_pages_of(const std::vector<std::byte>& img) {
  uint64_t n = 0;
  for (size_t off = 0; off < img.size(); off += 4096) n += is_zero_page(img.data() + off, 4096) ? 1 : 0;
  return n;
}

// QEMU's pass allocates every page of a departing VM's RAM file: its zero
// pages are punched out of the retained snapshot, which reads the same.
TEST_F(StoreFixture, ReleasingZeroPagesPunchesOutOnlyZerosAndKeepsTheBytes) {
  Manifest m = commit_full();
  const uint64_t zeros = zero_pages_of(img);
  ASSERT_GT(zeros, 10U);
  ASSERT_EQ(file_holes(open_file(store.image_path(m), O_RDONLY)->get(), kPages)->count(), 0U);
  DigestTable table = DigestTable::compute(h, img, 4096, 1);
  table[1] = h.zero_digest();  // a table that says zero where the bytes are not: read, kept
  auto released = store.release_zero_pages(m, table);
  ASSERT_TRUE(released.is_ok()) << released.status().message();
  EXPECT_EQ(*released, zeros * 4096);
  EXPECT_EQ(file_holes(open_file(store.image_path(m), O_RDONLY)->get(), kPages)->count(), zeros);
  EXPECT_EQ(image_bytes(m), img);
  EXPECT_TRUE(store.verify("vm")->ok());
  EXPECT_EQ(file_holes(open_file(store.image_path(m), O_RDONLY)->get(), kPages)->count(), zeros);  // verify read none
}

// A base's holes are zero pages: proven without reading them (on tmpfs a
// read through the writer's mapping would allocate each again).
TEST_F(BaseCheckTest, HolesAreProvenWithoutBeingRead) {
  Manifest m1 = commit_full();
  ASSERT_TRUE(store.release_zero_pages(m1, DigestTable::compute(h, img, 4096, 1)).is_ok());
  const uint64_t zeros = zero_pages_of(img);
  auto w = store.begin_write("vm", incr_plan(m1));
  ASSERT_TRUE(w.is_ok());
  (*w)->start_base_check(h);
  land(**w, img, {{1, 1}}, h);
  EXPECT_EQ((*w)->finish_base_check().value(), 0U);
  EXPECT_EQ(file_holes(open_file(store.image_path(m1), O_RDONLY)->get(), kPages)->count(), zeros);
}

TEST_F(BaseCheckTest, AHoleWhereTheBaseHadDataIsFound) {
  Manifest m1 = commit_full();
  uint64_t data_page = 1;
  while (is_zero_page(img.data() + data_page * 4096, 4096)) ++data_page;
  {
    auto fd = open_file(store.image_path(m1), O_RDWR);
    ASSERT_EQ(
        ::fallocate(fd->get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(data_page * 4096), 4096),
        0);
  }
  auto w = store.begin_write("vm", incr_plan(m1));
  ASSERT_TRUE(w.is_ok());
  (*w)->start_base_check(h);
  EXPECT_EQ((*w)->finish_base_check().value(), 1U);
}

TEST_F(StoreFixture, IncrementalCommitAdvancesTheEpoch) {
  Manifest m1 = commit_full();
  auto next = img;
  test::fill_page(next.data() + 7 * 4096, 99);
  auto w = store.begin_write("vm", incr_plan(m1));
  ASSERT_TRUE(w.is_ok()) << w.status().message();
  land(**w, next, {{7, 1}}, h);
  auto m2 = (*w)->commit(DigestTable::compute(h, next, 4096, 1).root(h), h);
  ASSERT_TRUE(m2.is_ok()) << m2.status().message();
  EXPECT_EQ(m2->epoch, 2U);
  EXPECT_EQ(m2->lineage, m1.lineage);
  EXPECT_EQ(image_bytes(*m2), next);
  EXPECT_TRUE(store.verify("vm")->ok());
}

TEST_F(StoreFixture, AbandonedIncrementalTransferRollsBack) {
  Manifest m1 = commit_full();
  auto next = test::random_image(kPages, 77);
  {
    auto w = store.begin_write("vm", incr_plan(m1));
    ASSERT_TRUE(w.is_ok());
    land(**w, next, {{0, 100}, {200, 10}}, h);
  }  // destroyed without commit
  EXPECT_EQ(image_bytes(m1), img);
  EXPECT_EQ(store.manifest("vm")->epoch, 1U);
  EXPECT_TRUE(store.verify("vm")->ok());
}

TEST_F(StoreFixture, WrongRootRefusesToCommitAndRollsBack) {
  Manifest m1 = commit_full();
  auto next = test::random_image(kPages, 78);
  auto w = store.begin_write("vm", incr_plan(m1));
  ASSERT_TRUE(w.is_ok());
  land(**w, next, {{0, 4}}, h);
  auto r = (*w)->commit(Digest{1, 2}, h);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("digest root mismatch"), std::string::npos);
  w->reset();
  EXPECT_EQ(image_bytes(m1), img);
}

// The daemon killed mid-transfer: a child process lands pages and dies without
// running a destructor. Opening the store again must restore the last epoch.
TEST_F(StoreFixture, KilledWriterIsRolledBackOnNextOpen) {
  Manifest m1 = commit_full();
  auto next = test::random_image(kPages, 79);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    SnapshotStore child(dir.path());
    auto w = child.begin_write("vm", incr_plan(m1, 2));
    if (!w.is_ok()) ::_exit(3);
    std::vector<PageRun> runs{{0, kPages}};
    if (!(*w)->prepare_overwrite(1, runs).is_ok()) ::_exit(4);
    std::memcpy((*w)->page_addr(0), next.data(), kPages * 4096);
    ::_exit(0);  // like SIGKILL: no destructors, journal and overwritten image left behind
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_NE(image_bytes(m1), img);  // torn on disk right now ...
  SnapshotStore again(dir.path());
  ASSERT_TRUE(again.open().is_ok());  // ... and whole again after recovery
  EXPECT_EQ(image_bytes(m1), img);
  auto v = again.verify("vm");
  ASSERT_TRUE(v.is_ok());
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->manifest.epoch, 1U);
}

TEST_F(StoreFixture, TornJournalTailIsIgnored) {
  Manifest m1 = commit_full();
  const std::string jpath = store.dir_of("vm") + "/journal.0";
  {
    auto j = UndoJournal::create(jpath, m1.epoch, 4096);
    ASSERT_TRUE(j.is_ok());
    const uint64_t page3[] = {3};
    ASSERT_TRUE(j->append_all(page3, img.data()).is_ok());
  }
  std::ofstream(jpath, std::ios::app | std::ios::binary) << "half an entry";
  // Page 3 was overwritten after its entry was durable; the torn tail was not.
  std::fstream f(store.image_path(m1), std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(3 * 4096);
  f.write("garbage", 7);
  f.close();
  auto restored = store.recover("vm");
  ASSERT_TRUE(restored.is_ok()) << restored.status().message();
  EXPECT_EQ(*restored, 1U);
  EXPECT_EQ(image_bytes(m1), img);
}

TEST_F(StoreFixture, FailedFirstFullTransferLeavesNothing) {
  {
    auto w = store.begin_write("fresh", full_plan());
    ASSERT_TRUE(w.is_ok());
    land(**w, img, {{0, 10}}, h);
  }
  EXPECT_EQ(store.manifest("fresh").status().code(), Errc::not_found);
  EXPECT_EQ(store.list()->size(), 0U);
}

TEST_F(StoreFixture, SecondWriterIsToldTheSnapshotIsBusy) {
  Manifest m1 = commit_full();
  auto w1 = store.begin_write("vm", incr_plan(m1));
  ASSERT_TRUE(w1.is_ok());
  auto w2 = store.begin_write("vm", incr_plan(m1));
  ASSERT_FALSE(w2.is_ok());
  EXPECT_EQ(w2.status().code(), Errc::busy);
  EXPECT_NE(w2.status().message().find("busy"), std::string::npos);
}

TEST_F(StoreFixture, SizeMismatchWithTheBaseIsRefused) {
  Manifest m1 = commit_full();
  WritePlan p = incr_plan(m1);
  p.size_bytes *= 2;
  auto w = store.begin_write("vm", p);
  ASSERT_FALSE(w.is_ok());
  EXPECT_EQ(w.status().code(), Errc::mismatch);
  EXPECT_NE(w.status().message().find("size mismatch"), std::string::npos);
}

TEST_F(StoreFixture, BadNamesAreRejected) {
  for (const char* n : {"a/b", "..", ".hidden", "", "x y", "../etc"}) {
    EXPECT_EQ(SnapshotStore::validate_name(n).code(), Errc::invalid_argument) << n;
    EXPECT_FALSE(store.begin_write(n, full_plan()).is_ok()) << n;
  }
  EXPECT_TRUE(SnapshotStore::validate_name("web-1.prod_2").is_ok());
}

TEST_F(StoreFixture, DropRemovesTheSnapshot) {
  commit_full();
  ASSERT_TRUE(store.drop("vm").is_ok());
  EXPECT_EQ(store.manifest("vm").status().code(), Errc::not_found);
  EXPECT_EQ(store.drop("vm").code(), Errc::not_found);
}

}  // namespace
}  // namespace bnf
