// What every transfer reports under the same stable JSON keys (documented in
// docs/operations.md): image pushes (PushReport) and VM migrations
// (MigrationReport) extend it with their own.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace bnf {

struct TripReport {
  std::string mode;  // "full" | "incremental"
  uint64_t pages_total = 0;
  uint64_t pages_sent = 0;
  uint64_t pages_skipped = 0;
  uint64_t pages_zero = 0;
  uint64_t wire_bytes = 0;  // bytes sent and received on every connection of the transfer
  double seconds = 0;
  std::string fallback;  // why a shortcut that could have been taken was not ("" if none)
  std::string lineage;
  uint64_t epoch = 0;

  [[nodiscard]] nlohmann::json trip_json() const {
    return {{"mode", mode},
            {"pages_total", pages_total},
            {"pages_sent", pages_sent},
            {"pages_skipped", pages_skipped},
            {"pages_zero", pages_zero},
            {"wire_bytes", wire_bytes},
            {"seconds", seconds},
            {"fallback", fallback},
            {"lineage", lineage},
            {"epoch", epoch}};
  }
};

}  // namespace bnf
