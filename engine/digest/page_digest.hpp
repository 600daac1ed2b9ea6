// Per-page content digests (keyed XXH3-128) and zero-page detection (ISA-L).
// The key is random per snapshot lineage and never leaves the two hosts, so a
// guest cannot choose page contents that collide under it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "bitmap/page_bitmap.hpp"
#include "common/status.hpp"

namespace bnf {

struct Digest {
  uint64_t lo = 0;
  uint64_t hi = 0;
  bool operator==(const Digest&) const = default;
};
static_assert(sizeof(Digest) == 16);

using DigestKey = std::array<uint8_t, 32>;

DigestKey random_digest_key();
std::string to_hex(std::span<const uint8_t> bytes);
std::string digest_hex(const Digest& d);
Result<Digest> digest_from_hex(std::string_view hex);
Result<DigestKey> digest_key_from_hex(std::string_view hex);

bool is_zero_page(const void* page, size_t len) noexcept;

class PageDigester {
 public:
  explicit PageDigester(const DigestKey& key);
  [[nodiscard]] Digest digest(const void* data, size_t len) const noexcept;
  // Digest of an all-zero page of `page_size` bytes (cached: zero pages are common).
  [[nodiscard]] Digest zero_digest() const noexcept { return zero_; }
  // Digest of a page, short-cutting zero pages through ISA-L's zero detection.
  [[nodiscard]] Digest page(const void* data, size_t page_size) const noexcept;
  [[nodiscard]] const DigestKey& key() const noexcept { return key_; }

 private:
  DigestKey key_;
  std::array<uint8_t, 192> secret_{};
  Digest zero_;
};

// One digest per page of an image, plus the root that names the whole table.
class DigestTable {
 public:
  DigestTable() = default;
  explicit DigestTable(uint64_t pages) : d_(pages) {}
  [[nodiscard]] uint64_t size() const noexcept { return d_.size(); }
  Digest& operator[](uint64_t i) { return d_[i]; }
  const Digest& operator[](uint64_t i) const { return d_[i]; }
  [[nodiscard]] Digest root(const PageDigester& h) const noexcept;
  // One digest per `chunk_pages` consecutive pages (over their digests): two
  // hosts compare these to find the few chunks where their images differ.
  [[nodiscard]] std::vector<Digest> chunk_digests(const PageDigester& h, uint64_t chunk_pages) const;
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return std::as_bytes(std::span(d_)); }
  std::span<std::byte> writable_bytes() noexcept { return std::as_writable_bytes(std::span(d_)); }

  // Digests every page of `image` (len a multiple of page_size), using `threads` threads.
  static DigestTable compute(const PageDigester& h, std::span<const std::byte> image, uint32_t page_size,
                             unsigned threads);
  // Digests again the pages of `image` that `which` names (4 KiB pages, in
  // chunks taken in turn by `threads` threads); returns how many.
  uint64_t rehash(const PageDigester& h, std::span<const std::byte> image, const PageBitmap& which, unsigned threads);

 private:
  std::vector<Digest> d_;
};

}  // namespace bnf
