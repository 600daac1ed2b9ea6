// Landing frames in a snapshot image: shared by image pushes and migrations.
#pragma once

#include "digest/page_digest.hpp"
#include "protocol/control.hpp"
#include "snapshot/snapshot_store.hpp"

namespace bnf {

// A PAGES frame: bounds-checked runs, journal, bytes straight into the image, CRC, digests.
Status land_pages(transport::Connection& c, SnapshotWriter& w, const PageDigester& h, unsigned stream,
                  unsigned streams, const proto::Frame& f);
// A ZEROS frame: bounds-checked runs become zero pages.
Status land_zeros(SnapshotWriter& w, const PageDigester& h, unsigned stream, unsigned streams, const proto::Frame& f);

}  // namespace bnf
