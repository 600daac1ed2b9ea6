#include "push/sharding.hpp"

namespace bnf {

std::vector<std::vector<PageRun>> frames_for_stream(const PageBitmap& bm, unsigned stream, unsigned streams,
                                                    uint64_t max_pages, uint64_t max_runs) {
  std::vector<std::vector<PageRun>> frames;
  std::vector<PageRun> cur;
  uint64_t cur_pages = 0;
  auto emit = [&](PageRun r) {
    if (cur_pages + r.count > max_pages || cur.size() >= max_runs) {
      frames.push_back(std::move(cur));
      cur.clear();
      cur_pages = 0;
    }
    cur.push_back(r);
    cur_pages += r.count;
  };
  bm.for_each_run([&](PageRun r) {
    uint64_t p = r.first;
    const uint64_t end = r.first + r.count;
    while (p < end) {
      const uint64_t chunk_end = std::min(end, (p / kShardPages + 1) * kShardPages);
      if (shard_of(p, streams) == stream) {
        // Split further so that no run exceeds a frame.
        for (uint64_t q = p; q < chunk_end; q += max_pages) emit({q, std::min(max_pages, chunk_end - q)});
      }
      p = chunk_end;
    }
  });
  if (!cur.empty()) frames.push_back(std::move(cur));
  return frames;
}

}  // namespace bnf
