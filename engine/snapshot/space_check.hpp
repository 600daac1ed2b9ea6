// Before a transfer allocates anything sized by the peer's numbers (an image
// file, its digest table in memory and on disk), those numbers are checked:
// against the largest image bnf takes, against the free space of the state
// directory's filesystem and against the memory the host has. A peer that
// declares too much gets a one-line reason, never an aborted daemon.
//
// "Enough space": the image is sparse, but every page of it may arrive, so
// the declared size plus its digest table (16 bytes a page) must fit in the
// free space plus what the snapshot it replaces holds already (its image's
// allocated blocks: an incremental transfer writes over them, a full one
// frees them when it commits). Pages whose space is not there after all (a
// full transfer beside the old image, other writers) still fail cleanly when
// their space is reserved (fallocate).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.hpp"

namespace bnf {

inline constexpr uint64_t kMaxImageBytes = 64ULL << 40;  // 64 TiB (README, "Status and limits")
inline constexpr uint64_t kDigestBytesPerPage = 16;

struct SpaceAtHand {
  uint64_t free_bytes = 0;        // the filesystem's, for unprivileged writers
  uint64_t base_bytes = 0;        // allocated by the image the transfer replaces or overwrites
  uint64_t memory_available = 0;  // the host's (MemAvailable)
  std::string where;              // the directory, for the message
};

// Refuses a size over kMaxImageBytes (Errc::invalid_argument), naming it.
[[nodiscard]] Status check_image_size(uint64_t size_bytes);
// Refuses an image of `size_bytes` that `at_hand` cannot hold (Errc::no_space).
[[nodiscard]] Status check_room_for_image(uint64_t size_bytes, uint64_t page_size, const SpaceAtHand& at_hand);
// What the filesystem of `dir` and the host have; `base_image` ("" if none) is
// the file whose allocated blocks count as available.
[[nodiscard]] Result<SpaceAtHand> space_at_hand(const std::string& dir, const std::string& base_image);

}  // namespace bnf
