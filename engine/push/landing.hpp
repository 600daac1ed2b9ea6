// Landing frames in a snapshot image: shared by image pushes and migrations.
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
// On a single-stream connection (VM trips): a PAGES or ZEROS frame is landed
// (true); any other frame is left to the caller (false).
Result<bool> land_if_pages(transport::Connection& c, SnapshotWriter& w, const PageDigester& h, const proto::Frame& f);

}  // namespace bnf
