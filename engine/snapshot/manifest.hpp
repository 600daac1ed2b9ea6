// The manifest names one committed epoch of a retained snapshot.
#pragma once

#include <cstdint>
#include <string>

#include "common/page.hpp"
#include "common/status.hpp"
#include "digest/page_digest.hpp"

namespace bnf {

struct Manifest {
  static constexpr int kFormat = 1;
  std::string name;
  std::string lineage;  // 32 hex chars; new on every full transfer
  uint64_t epoch = 0;   // 1 for the first commit of a lineage, +1 per incremental commit
  uint32_t page_size = kPageSize;
  uint64_t size_bytes = 0;
  DigestKey key{};             // digest key of this lineage (never leaves the hosts)
  Digest root{};               // root of the digest table
  std::string digests_file;    // table file name inside the snapshot directory
  int64_t committed_at = 0;    // unix seconds
  std::string committed_from;  // peer that pushed this epoch
  std::string mode;            // "full" | "incremental"
  uint64_t pages_landed = 0;   // pages written by the transfer that made this epoch
  bool has_device_state = false;

  [[nodiscard]] uint64_t pages() const { return size_bytes / page_size; }
  [[nodiscard]] std::string to_json(bool with_key) const;
  static Result<Manifest> from_json(std::string_view text);
};

Result<std::string> random_lineage();

}  // namespace bnf
