// Micro-benchmarks of the engine's hot loops (Google Benchmark).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "bitmap/page_bitmap.hpp"
#include "common/crc32c.hpp"
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
