// Landing pages in a snapshot image: every page any trip writes into an
// image goes through here (image pushes, relayed and direct VM trips), so
// every landed page is journalled (prepare_overwrite) and digested
// (record_landed) the same way.
#pragma once

#include "digest/page_digest.hpp"
#include "protocol/control.hpp"
#include "snapshot/snapshot_store.hpp"

namespace bnf {

// A PAGES frame: bounds-checked runs, journal, bytes straight into the image, CRC, digests.
Status land_pages(transport::Connection& c, SnapshotWriter& w, const PageDigester& h, unsigned stream, unsigned streams,
                  const proto::Frame& f);
// A ZEROS frame: bounds-checked runs become zero pages.
Status land_zeros(SnapshotWriter& w, const PageDigester& h, unsigned stream, unsigned streams, const proto::Frame& f);
// Zero pages: the runs become zero pages (their space given back).
Status land_zero_runs(SnapshotWriter& w, const PageDigester& h, unsigned stream, std::span<const PageRun> runs);
// One page from memory (a direct trip's stream codec) into the image, whose
// space the caller has prepared (SnapshotWriter::prepare_overwrite).
void land_page_copy(SnapshotWriter& w, const PageDigester& h, uint64_t page, const std::byte* data);
// On a single-stream connection (VM trips): a PAGES or ZEROS frame is landed
// (true); any other frame is left to the caller (false).
Result<bool> land_if_pages(transport::Connection& c, SnapshotWriter& w, const PageDigester& h, const proto::Frame& f);

}  // namespace bnf
