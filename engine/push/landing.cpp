#include "push/landing.hpp"

#include <cstring>

#include "common/crc32c.hpp"
#include "push/sharding.hpp"

namespace bnf {

namespace {
Status check_shard(std::span<const PageRun> runs, unsigned stream, unsigned streams) {
  for (const PageRun& r : runs)
    if (!run_in_shard(r, stream, streams)) return {Errc::protocol, "bad frame: run sent on the wrong stream"};
  return Status::ok();
}
}  // namespace

Status land_pages(transport::Connection& c, SnapshotWriter& w, const PageDigester& h, unsigned stream, unsigned streams,
                  const proto::Frame& f) {
  BNF_ASSIGN_OR_RETURN(std::vector<PageRun> runs, proto::decode_runs(f.meta, w.pages()));
  const uint64_t bytes = pages_in(runs) * w.page_size();
  if (f.header.payload_len != bytes || bytes > proto::kMaxPagesPayload)
    return {Errc::protocol, "bad frame: PAGES payload length does not match its runs"};
  BNF_TRY(check_shard(runs, stream, streams));
  BNF_TRY(w.prepare_overwrite(stream, runs));
  std::vector<transport::MutableBuffer> dst;
  dst.reserve(runs.size());
  for (const PageRun& r : runs) dst.push_back({w.page_addr(r.first), r.count * w.page_size()});
  BNF_TRY(c.recv_scatter(dst));
  uint32_t crc = crc32c_init;
  for (const auto& d : dst) crc = crc32c_extend(crc, d.data, d.size);
  if (crc32c_final(crc) != f.header.payload_crc) return {Errc::corrupt, "bad frame: payload CRC mismatch"};
  w.record_landed(runs, h);
  return Status::ok();
}

Status land_zeros(SnapshotWriter& w, const PageDigester& h, unsigned stream, unsigned streams, const proto::Frame& f) {
  if (f.header.payload_len != 0) return {Errc::protocol, "bad frame: ZEROS frame with a payload"};
  BNF_ASSIGN_OR_RETURN(std::vector<PageRun> runs, proto::decode_runs(f.meta, w.pages()));
  BNF_TRY(check_shard(runs, stream, streams));
  return land_zero_runs(w, h, stream, runs);
}

Status land_zero_runs(SnapshotWriter& w, const PageDigester& h, unsigned stream, std::span<const PageRun> runs) {
  BNF_TRY(w.zero_runs(stream, runs));
  w.record_landed(runs, h);
  return Status::ok();
}

void land_page_copy(SnapshotWriter& w, const PageDigester& h, uint64_t page, const std::byte* data) {
  std::memcpy(w.page_addr(page), data, w.page_size());
  const PageRun run{page, 1};
  w.record_landed(std::span(&run, 1), h);
}

Result<bool> land_if_pages(transport::Connection& c, SnapshotWriter& w, const PageDigester& h, const proto::Frame& f) {
  if (f.header.type == proto::FrameType::pages) {
    BNF_TRY(land_pages(c, w, h, 0, 1, f));
    return true;
  }
  if (f.header.type == proto::FrameType::zeros) {
    BNF_TRY(land_zeros(w, h, 0, 1, f));
    return true;
  }
  return false;
}

}  // namespace bnf
