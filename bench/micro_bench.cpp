// Micro-benchmarks of the engine's hot loops (Google Benchmark).
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <span>
#include <vector>

#include "bitmap/page_bitmap.hpp"
#include "common/crc32c.hpp"
#include "common/unique_fd.hpp"
#include "digest/page_digest.hpp"

namespace {

// Iterating the runs of a 1 GiB region's bitmap (262,144 pages) with 1% set.
void BM_BitmapRuns1GiB1Pct(benchmark::State& st) {
  bnf::PageBitmap bm(262144);
  std::mt19937_64 rng(7);
  while (bm.count() < 2621) bm.set(rng() % 262144);
  for (auto _ : st) {
    uint64_t pages = 0;
    bm.for_each_run([&](bnf::PageRun r) { pages += r.count; });
    benchmark::DoNotOptimize(pages);
  }
}
BENCHMARK(BM_BitmapRuns1GiB1Pct)->Unit(benchmark::kMicrosecond);

void BM_PageDigest(benchmark::State& st) {
  std::vector<std::byte> page(4096, std::byte{1});
  bnf::PageDigester h(bnf::random_digest_key());
  for (auto _ : st) benchmark::DoNotOptimize(h.page(page.data(), page.size()));
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * 4096);
}
BENCHMARK(BM_PageDigest);

// The switchover check's re-hash: a whole table over 1 GiB that is not in cache,
// against plain reads of the same memory (the bound it cannot beat).
std::vector<std::byte>& gib() {
  static std::vector<std::byte> mem = [] {
    std::vector<std::byte> m(1ULL << 30);
    for (size_t i = 0; i < m.size(); i += 8) m[i] = static_cast<std::byte>(i >> 12);
    return m;
  }();
  return mem;
}

void BM_DigestTable1GiB(benchmark::State& st) {
  bnf::PageDigester h(bnf::random_digest_key());
  for (auto _ : st)
    benchmark::DoNotOptimize(bnf::DigestTable::compute(h, gib(), 4096, static_cast<unsigned>(st.range(0))));
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * (1LL << 30));
}
BENCHMARK(BM_DigestTable1GiB)
    ->Setup([](const benchmark::State&) { gib(); })
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The same re-hash over a 1 GiB tmpfs file (a VM's RAM file): through a fresh
// mapping, as a daemon that maps it at the stop does (page faults in the pass),
// against a mapping kept and faulted in beforehand.
struct TmpfsGiB {
  bnf::UniqueFd fd;
  TmpfsGiB() {
    char path[] = "/dev/shm/bnf-microbench-XXXXXX";
    fd = bnf::UniqueFd(mkstemp(path));
    unlink(path);
    std::vector<std::byte> chunk(1 << 20);
    for (size_t i = 0; i < chunk.size(); i += 8) chunk[i] = static_cast<std::byte>(i >> 12);
    for (size_t off = 0; off < (1ULL << 30); off += chunk.size())
      if (pwrite(fd.get(), chunk.data(), chunk.size(), static_cast<off_t>(off)) < 0) std::abort();
  }
  [[nodiscard]] std::span<const std::byte> map(bool populate) const {
    void* p = mmap(nullptr, 1ULL << 30, PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd.get(), 0);
    if (p == MAP_FAILED) std::abort();
    return {static_cast<const std::byte*>(p), 1ULL << 30};
  }
};

void BM_DigestTableTmpfs1GiB(benchmark::State& st) {
  static TmpfsGiB file;
  const bool kept = st.range(0) != 0;
  bnf::PageDigester h(bnf::random_digest_key());
  auto kept_map = kept ? file.map(true) : std::span<const std::byte>();
  for (auto _ : st) {
    auto m = kept ? kept_map : file.map(false);
    benchmark::DoNotOptimize(bnf::DigestTable::compute(h, m, 4096, 2));
    if (!kept) munmap(const_cast<std::byte*>(m.data()), m.size());
  }
  if (kept) munmap(const_cast<std::byte*>(kept_map.data()), kept_map.size());
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * (1LL << 30));
}
BENCHMARK(BM_DigestTableTmpfs1GiB)
    ->ArgName("kept_mapping")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_ReadSum1GiB(benchmark::State& st) {
  const auto* w = reinterpret_cast<const uint64_t*>(gib().data());
  for (auto _ : st) {
    uint64_t sum = 0;
    for (size_t i = 0; i < gib().size() / 8; ++i) sum += w[i];
    benchmark::DoNotOptimize(sum);
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * (1LL << 30));
}
BENCHMARK(BM_ReadSum1GiB)->Setup([](const benchmark::State&) { gib(); })->Unit(benchmark::kMillisecond);

void BM_Crc32c(benchmark::State& st) {
  std::vector<std::byte> buf(1 << 20, std::byte{3});
  for (auto _ : st) benchmark::DoNotOptimize(bnf::crc32c(buf.data(), buf.size()));
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * (1 << 20));
}
BENCHMARK(BM_Crc32c);

void BM_ZeroDetect(benchmark::State& st) {
  std::vector<std::byte> page(4096);
  for (auto _ : st) benchmark::DoNotOptimize(bnf::is_zero_page(page.data(), page.size()));
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * 4096);
}
BENCHMARK(BM_ZeroDetect);

}  // namespace

BENCHMARK_MAIN();
