// The QEMU stream codec on synthetic streams: the rewrite rules and every refusal.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "stream/stream_rewriter.hpp"
#include "stream_builder.hpp"

namespace bnf::qemu {
namespace {

using test::Builder;

// Records what the handler saw; takes ram0's pages out, keeps other blocks'.
struct Recorder : PageHandler {
  std::vector<std::pair<std::string, uint64_t>> pages;
  Status on_blocks(const std::vector<RamBlockInfo>& b) override {
    blocks = b.size();
    return Status::ok();
  }
  Result<bool> on_page(const std::string& block, uint64_t offset, const std::byte*) override {
    pages.emplace_back(block, offset);
    return block != "ram0";
  }
  Result<bool> on_zero(const std::string& block, uint64_t) override { return block != "ram0"; }
  size_t blocks = 0;
};

struct RunResult {
  Status status;
  std::string out;
  RewriteStats stats;
};

RunResult run(const std::string& in, PageHandler& h) {
  int pin[2];
  int pout[2];
  EXPECT_EQ(::pipe(pin), 0);
  EXPECT_EQ(::pipe(pout), 0);
  EXPECT_EQ(::write(pin[1], in.data(), in.size()), static_cast<ssize_t>(in.size()));
  ::close(pin[1]);
  FILE* tmp = std::tmpfile();
  FdSource src(pin[0]);
  FdSink sink(fileno(tmp));
  StreamRewriter rw(src, sink, h);
  RunResult r{rw.run(), "", rw.stats()};
  (void)sink.flush();
  std::rewind(tmp);
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, tmp)) > 0) r.out.append(buf, n);
  std::fclose(tmp);
  ::close(pin[0]);
  ::close(pout[0]);
  ::close(pout[1]);
  return r;
}

TEST(StreamCodec, TakesOutPagesAndRenamesTheNextKeptRecord) {
  Builder b;
  b.header().ram_start(8192).be64(0x10).footer();
  // PART: ram0 page (named), pc.rom page continuing ... no: pc.rom page named, then ram0 again.
  b.u8(0x02).be32(2);
  b.be64(0x0000 | 0x08).str8("ram0").page('a');    // taken out
  b.be64(0x1000 | 0x08 | 0x20).page('b');          // ram0 via CONTINUE: taken out
  b.be64(0x0000 | 0x08).str8("pc.rom").page('c');  // kept, named
  b.be64(0x10).footer().device_tail();
  Recorder h;
  RunResult r = run(b.s, h);
  ASSERT_TRUE(r.status.is_ok()) << r.status.message();
  EXPECT_EQ(h.blocks, 2U);
  ASSERT_EQ(h.pages.size(), 3U);
  EXPECT_EQ(h.pages[1], (std::pair<std::string, uint64_t>{"ram0", 0x1000}));
  EXPECT_EQ(r.stats.pages_removed, 2U);
  EXPECT_NE(r.out.find("DEVICE-STATE"), std::string::npos);  // device state verbatim
  EXPECT_EQ(r.out.find(std::string(4096, 'a')), std::string::npos);
  EXPECT_NE(r.out.find(std::string(4096, 'c')), std::string::npos);
  EXPECT_EQ(r.out.size(), b.s.size() - 2 * (8 + 4096) - 5);  // two records and one block name gone
}

// Takes out only ram0's first page.
struct FirstPageTaker : Recorder {
  Result<bool> on_page(const std::string& block, uint64_t offset, const std::byte* d) override {
    (void)Recorder::on_page(block, offset, d);
    return !(block == "ram0" && offset == 0);
  }
};

TEST(StreamCodec, ContinueIsClearedWhenTheRecordItContinuedWasTakenOut) {
  Builder b;
  b.header().ram_start(8192).be64(0x10).footer();
  b.u8(0x02).be32(2);
  b.be64(0x0000 | 0x08).str8("ram0").page('a');  // taken out: it carried the block name
  b.be64(0x1000 | 0x08 | 0x20).page('b');        // kept: must now name its block itself
  b.be64(0x10).footer().device_tail();
  FirstPageTaker h;
  RunResult r = run(b.s, h);
  ASSERT_TRUE(r.status.is_ok()) << r.status.message();
  Builder expect;
  expect.be64(0x1000 | 0x08).str8("ram0").page('b');
  EXPECT_NE(r.out.find(expect.s), std::string::npos) << "kept record lost its block name";
  Builder wrong;
  wrong.be64(0x1000 | 0x08 | 0x20).page('b');
  EXPECT_EQ(r.out.find(wrong.s), std::string::npos);
}

struct RefusalCase {
  const char* name;
  std::string stream;
  const char* expect;
};

TEST(StreamCodec, RefusesWhatItDoesNotUnderstandByName) {
  std::vector<RefusalCase> cases;
  cases.push_back({"bad magic", Builder().be32(0x12345678).be32(3).s, "not a QEMU migration stream"});
  cases.push_back({"version", Builder().be32(0x5145564d).be32(2).s, "stream version 2"});
  {
    Builder b;
    b.header().ram_start(8192).be64(0x10).footer().u8(0x02).be32(2).be64(0x40).str8("ram0");
    cases.push_back({"xbzrle", b.s, "XBZRLE"});
  }
  {
    Builder b;
    b.header().ram_start(8192).be64(0x10).footer().u8(0x02).be32(2).be64(0x100).str8("ram0");
    cases.push_back({"compression", b.s, "compression"});
  }
  {
    Builder b;
    b.header().ram_start(8192).be64(0x10).footer().u8(0x02).be32(2).be64(0x200 | 0x08).str8("ram0");
    cases.push_back({"multifd flag", b.s, "multifd"});
  }
  {
    Builder b;
    b.header().u8(0x08).s += std::string("\x00\x03\x00\x00", 4);
    cases.push_back({"postcopy advise", b.s, "postcopy"});
  }
  {
    Builder b;
    b.header().u8(0x01).be32(5).str8("block").be32(0).be32(1);
    cases.push_back({"block migration", b.s, "'block'"});
  }
  {
    Builder b;
    b.header().ram_start(8192).be64(0x10).footer().u8(0x02).be32(2).be64(0x08).str8("ram0").raw("short");
    cases.push_back({"truncated page", b.s, "ended inside page record"});
  }
  {
    Builder b;
    b.header().ram_start(8192).be64(0x10).footer().u8(0x02).be32(2).be64(0x08 | 0x20);
    cases.push_back({"continue without a block", b.s, "never named"});
  }
  for (const RefusalCase& c : cases) {
    Recorder h;
    RunResult r = run(c.stream, h);
    ASSERT_FALSE(r.status.is_ok()) << c.name;
    EXPECT_NE(r.status.message().find(c.expect), std::string::npos) << c.name << ": " << r.status.message();
  }
}

// Pages are handed over in place: views across the buffer's end and short
// reads (a writer dribbling odd-sized chunks) still give the exact bytes.
TEST(StreamSource, ViewsSpanShortReadsAndTheBufferEnd) {
  int sv[2];
  ASSERT_EQ(::pipe(sv), 0);
  constexpr size_t kTotal = (3U << 20) + 12345;
  auto byte_at = [](size_t i) { return static_cast<char>((i * 131 + i / 4093) & 0xff); };
  std::thread writer([&] {
    std::string chunk;
    for (size_t off = 0; off < kTotal;) {
      const size_t n = std::min<size_t>(1000 + off % 977, kTotal - off);
      chunk.resize(n);
      for (size_t i = 0; i < n; ++i) chunk[i] = byte_at(off + i);
      ASSERT_EQ(::write(sv[1], chunk.data(), n), static_cast<ssize_t>(n));
      off += n;
    }
    ::close(sv[1]);
  });
  FdSource src(sv[0]);
  size_t off = 0;
  bool same = true;
  while (off + 4096 + 7 <= kTotal) {
    std::array<std::byte, 7> head{};
    ASSERT_TRUE(src.read(head, "head").is_ok());
    for (size_t i = 0; i < head.size(); ++i) same &= static_cast<char>(head[i]) == byte_at(off + i);
    off += head.size();
    auto page = src.view(4096, "page");
    ASSERT_TRUE(page.is_ok()) << page.status().message();
    for (size_t i = 0; i < 4096; ++i) same &= static_cast<char>((*page)[i]) == byte_at(off + i);
    off += 4096;
  }
  EXPECT_TRUE(same);
  EXPECT_EQ(src.consumed(), off);
  auto past_end = src.view(kTotal - off + 1, "page");  // more than is left: the end is named
  EXPECT_FALSE(past_end.is_ok());
  writer.join();
  ::close(sv[0]);
}

// A relayed trip's return path: while the source waits for stream bytes that
// only come after the destination answered, the watched descriptor's bytes are
// handed on (here: echoed into the stream, as the source QEMU would answer).
TEST(StreamSource, AWatchedDescriptorIsServedWhileTheStreamWaits) {
  int stream[2], back[2];
  ASSERT_EQ(::pipe(stream), 0);
  ASSERT_EQ(::pipe(back), 0);
  FdSource src(stream[0]);
  int served = 0;
  src.also_watch(back[0], [&]() -> Status {
    char c = 0;
    if (::read(back[0], &c, 1) != 1) return {Errc::io, "watched read"};
    ++served;
    return ::write(stream[1], &c, 1) == 1 ? Status::ok() : Status(Errc::io, "echo");
  });
  std::thread peer([&] { (void)::write(back[1], "S", 1); });  // the stream stays silent until this is served
  std::array<std::byte, 1> got{};
  ASSERT_TRUE(src.read(got, "answer").is_ok());
  EXPECT_EQ(static_cast<char>(got[0]), 'S');
  EXPECT_EQ(served, 1);
  peer.join();

  src.also_watch(back[0], [] { return Status(Errc::connection_lost, "peer: the destination failed"); });
  (void)::write(back[1], "E", 1);
  const Status failed = src.read(got, "more");
  EXPECT_EQ(failed.code(), Errc::connection_lost);  // the watcher's failure ends the wait, as it said
  for (int fd : {stream[0], stream[1], back[0], back[1]}) ::close(fd);
}

}  // namespace
}  // namespace bnf::qemu
