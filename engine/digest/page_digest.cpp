#include "digest/page_digest.hpp"

#define XXH_INLINE_ALL
#include <isa-l/mem_routines.h>
#include <xxhash.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "common/page.hpp"
#include "common/random.hpp"

// libxxhash's runtime dispatcher (xxh_x86dispatch.h, whose declarations clash
// with the inline build used for everything else here).
extern "C" {
struct BnfXxh128 {
  uint64_t low64;
  uint64_t high64;
};
BnfXxh128 XXH3_128bits_withSecret_dispatch(const void* input, size_t len, const void* secret, size_t secret_len);
}

namespace bnf {

namespace {
alignas(64) const uint8_t kZeros[kPageSize] = {};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}
}  // namespace

DigestKey random_digest_key() { return random_array<std::tuple_size_v<DigestKey>>(); }

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    s.push_back(digits[b >> 4]);
    s.push_back(digits[b & 15]);
  }
  return s;
}

std::string digest_hex(const Digest& d) {
  uint8_t b[16];
  for (int i = 0; i < 8; ++i) {
    b[i] = static_cast<uint8_t>(d.hi >> (56 - 8 * i));
    b[8 + i] = static_cast<uint8_t>(d.lo >> (56 - 8 * i));
  }
  return to_hex(b);
}

Result<Digest> digest_from_hex(std::string_view hex) {
  if (hex.size() != 32) return Status(Errc::corrupt, "digest: wrong length");
  Digest d;
  for (size_t i = 0; i < 32; ++i) {
    const int v = hex_value(hex[i]);
    if (v < 0) return Status(Errc::corrupt, "digest: not hex");
    uint64_t& half = i < 16 ? d.hi : d.lo;
    half = half * 16 + static_cast<uint64_t>(v);
  }
  return d;
}

Result<DigestKey> digest_key_from_hex(std::string_view hex) {
  DigestKey k{};
  if (hex.size() != k.size() * 2) return Status(Errc::corrupt, "digest key: wrong length");
  for (size_t i = 0; i < k.size(); ++i) {
    const int h = hex_value(hex[2 * i]);
    const int l = hex_value(hex[2 * i + 1]);
    if (h < 0 || l < 0) return Status(Errc::corrupt, "digest key: not hex");
    k[i] = static_cast<uint8_t>(h * 16 + l);
  }
  return k;
}

bool is_zero_page(const void* page, size_t len) noexcept {
  // Most data pages differ from zero in their first word: answer those without
  // reading the whole page.
  uint64_t head = 0;
  if (len >= sizeof head) {
    std::memcpy(&head, page, sizeof head);
    if (head != 0) return false;
  }
  return isal_zero_detect(const_cast<void*>(page), len) == 0;
}

PageDigester::PageDigester(const DigestKey& key) : key_(key) {
  XXH3_generateSecret(secret_.data(), secret_.size(), key_.data(), key_.size());
  zero_ = digest(kZeros, kPageSize);
}

Digest PageDigester::digest(const void* data, size_t len) const noexcept {
  // libxxhash's dispatcher picks AVX2/AVX-512 where the CPU has them (the
  // inline header build is SSE2 only): 100 vs 200 ns per page in cache here.
  const BnfXxh128 h = XXH3_128bits_withSecret_dispatch(data, len, secret_.data(), secret_.size());
  return {h.low64, h.high64};
}

Digest PageDigester::page(const void* data, size_t page_size) const noexcept {
  if (page_size == kPageSize && is_zero_page(data, page_size)) return zero_;
  return digest(data, page_size);
}

Digest DigestTable::root(const PageDigester& h) const noexcept {
  return h.digest(d_.data(), d_.size() * sizeof(Digest));
}

std::vector<Digest> DigestTable::chunk_digests(const PageDigester& h, uint64_t chunk_pages) const {
  std::vector<Digest> out;
  out.reserve((d_.size() + chunk_pages - 1) / chunk_pages);
  for (uint64_t p = 0; p < d_.size(); p += chunk_pages)
    out.push_back(h.digest(d_.data() + p, std::min<uint64_t>(chunk_pages, d_.size() - p) * sizeof(Digest)));
  return out;
}

DigestTable DigestTable::compute(const PageDigester& h, std::span<const std::byte> image, uint32_t page_size,
                                 unsigned threads) {
  const uint64_t pages = image.size() / page_size;
  DigestTable t(pages);
  threads = std::max(1U, std::min<unsigned>(threads, static_cast<unsigned>(pages / 1024 + 1)));
  auto work = [&](uint64_t from, uint64_t to) {
    for (uint64_t p = from; p < to; ++p) t.d_[p] = h.page(image.data() + p * page_size, page_size);
  };
  std::vector<std::thread> pool;
  const uint64_t per = pages / threads;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back(work, per * i, i + 1 == threads ? pages : per * (i + 1));
  work(0, threads == 1 ? pages : per);
  for (auto& th : pool) th.join();
  return t;
}

uint64_t DigestTable::rehash(const PageDigester& h, std::span<const std::byte> image, const PageBitmap& which,
                             unsigned threads) {
  constexpr uint64_t kChunk = 1024;  // what is left is often one run at the end: chunks spread it
  const uint64_t pages = std::min<uint64_t>(d_.size(), which.size());
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> hashed{0};
  auto work = [&] {
    uint64_t mine = 0;
    for (uint64_t c; (c = next.fetch_add(kChunk)) < pages;) {
      const uint64_t end = std::min(pages, c + kChunk);
      for (uint64_t p = which.find_next_set(c); p < end; p = which.find_next_set(p + 1)) {
        d_[p] = h.page(image.data() + p * kPageSize, kPageSize);
        ++mine;
      }
    }
    hashed += mine;
  };
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < std::max(1U, threads); ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return hashed;
}

}  // namespace bnf
