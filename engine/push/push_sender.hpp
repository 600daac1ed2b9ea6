// The sending side of a push: handshake, page filter, data streams, commit.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "bitmap/page_bitmap.hpp"
#include "common/page.hpp"
#include "common/trip_report.hpp"
#include "common/uri.hpp"
#include "transport/transport.hpp"

namespace bnf {

struct PushOptions {
  std::string name;  // snapshot name on the receiver
  Endpoint to;
  unsigned streams = 1;               // data connections, pages sharded over them
  const PageBitmap* dirty = nullptr;  // changed pages since the base (the bitmap model)
  bool force_full = false;            // ignore any base and replace the snapshot
  std::string state_file;             // where this side keeps what it pushed last ("" = nowhere)
  std::string sender_id;              // recorded by the receiver
  unsigned digest_threads = 2;
  std::function<void(const std::string&)> note;  // user-visible notes (fallbacks)
};

struct PushReport : TripReport {
  uint64_t payload_bytes = 0;  // page bytes among wire_bytes
  double handshake_seconds = 0;
  double plan_seconds = 0;      // page filter (digests)
  double transfer_seconds = 0;  // data streams until flushed
  double commit_seconds = 0;
  unsigned streams = 1;
  std::string base_source;  // "none" | "local-state" | "receiver-table"
  std::string root;
  uint64_t zc_bytes = 0;
  uint64_t zc_copied = 0;
  uint64_t zc_notifications = 0;

  [[nodiscard]] double throughput_mib_s() const { return seconds > 0 ? payload_bytes / seconds / (1 << 20) : 0; }
  [[nodiscard]] nlohmann::json to_json() const;
  [[nodiscard]] std::string to_text() const;
};

// Pushes `image` (a mapped file, size a multiple of kPageSize) into the receiver's snapshot.
Result<PushReport> push_image(transport::Transport& transport, std::span<const std::byte> image,
                              const PushOptions& opts);

}  // namespace bnf
