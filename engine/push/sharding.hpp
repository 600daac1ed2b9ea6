// Pages are sharded over a session's data streams in chunks of kShardPages:
// a page always travels on the same stream, so its updates stay in order.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "bitmap/page_bitmap.hpp"

namespace bnf {

inline constexpr uint64_t kShardPages = 256;  // 1 MiB of 4 KiB pages
inline constexpr unsigned kMaxStreams = 16;

inline unsigned shard_of(uint64_t page, unsigned streams) {
  return static_cast<unsigned>((page / kShardPages) % streams);
}

// True when the run lies inside one shard chunk that belongs to `stream`.
inline bool run_in_shard(const PageRun& r, unsigned stream, unsigned streams) {
  return r.first / kShardPages == (r.first + r.count - 1) / kShardPages && shard_of(r.first, streams) == stream;
}

// Splits the runs of `bm` at shard-chunk boundaries and groups them into frames
// of at most `max_pages` pages / `max_runs` runs, for one stream.
std::vector<std::vector<PageRun>> frames_for_stream(const PageBitmap& bm, unsigned stream, unsigned streams,
                                                    uint64_t max_pages, uint64_t max_runs);

}  // namespace bnf
