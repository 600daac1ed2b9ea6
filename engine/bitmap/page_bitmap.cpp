#include "bitmap/page_bitmap.hpp"

#include <atomic>
#include <bit>
#include <cstring>

#include "common/crc32c.hpp"

namespace bnf {

namespace {
constexpr uint64_t kBits = 64;
constexpr uint32_t kMagic = 0x42464E42;  // "BNFB"
constexpr uint8_t kRaw = 0;
constexpr uint8_t kRuns = 1;
constexpr size_t kHeader = 4 + 8 + 1 + 8;  // magic, pages, encoding, item count

std::atomic_ref<uint64_t> word_ref(std::vector<uint64_t>& w, uint64_t page) {
  return std::atomic_ref<uint64_t>(w[page / kBits]);
}

// Word `i` of a bitmap another thread may be setting bits in (set() is atomic).
uint64_t load_word(const std::vector<uint64_t>& w, size_t i) {
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(w[i])).load(std::memory_order_relaxed);
}

void put64(std::string& out, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);  // little-endian hosts only (x86-64, aarch64)
  out.append(b, 8);
}
uint64_t get64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
}  // namespace

uint64_t pages_in(std::span<const PageRun> runs) noexcept {
  uint64_t n = 0;
  for (const PageRun& r : runs) n += r.count;
  return n;
}

PageBitmap::PageBitmap(uint64_t pages) : pages_(pages), words_((pages + kBits - 1) / kBits, 0) {}

void PageBitmap::set(uint64_t page) noexcept {
  word_ref(words_, page).fetch_or(1ULL << (page % kBits), std::memory_order_relaxed);
}
void PageBitmap::clear(uint64_t page) noexcept {
  word_ref(words_, page).fetch_and(~(1ULL << (page % kBits)), std::memory_order_relaxed);
}
bool PageBitmap::test(uint64_t page) const noexcept {
  auto& w = const_cast<std::vector<uint64_t>&>(words_);
  return (word_ref(w, page).load(std::memory_order_relaxed) >> (page % kBits)) & 1U;
}
bool PageBitmap::test_and_set(uint64_t page) noexcept {
  const uint64_t bit = 1ULL << (page % kBits);
  return (word_ref(words_, page).fetch_or(bit, std::memory_order_relaxed) & bit) != 0;
}

void PageBitmap::set_range(uint64_t first, uint64_t count) noexcept {
  uint64_t p = first;
  const uint64_t end = first + count;
  while (p < end && p % kBits != 0) set(p++);
  while (p + kBits <= end) {
    words_[p / kBits] = ~0ULL;
    p += kBits;
  }
  while (p < end) set(p++);
}

void PageBitmap::clear_range(uint64_t first, uint64_t count) noexcept {
  uint64_t p = first;
  const uint64_t end = first + count;
  while (p < end && p % kBits != 0) clear(p++);
  while (p + kBits <= end) {
    words_[p / kBits] = 0;
    p += kBits;
  }
  while (p < end) clear(p++);
}

void PageBitmap::set_all() noexcept {
  clear_all();
  set_range(0, pages_);
}
void PageBitmap::clear_all() noexcept { std::fill(words_.begin(), words_.end(), 0); }

uint64_t PageBitmap::find_next_set(uint64_t from) const noexcept {
  if (from >= pages_) return npos;
  uint64_t wi = from / kBits;
  uint64_t w = words_[wi] & (~0ULL << (from % kBits));
  while (true) {
    if (w != 0) {
      uint64_t bit = wi * kBits + static_cast<uint64_t>(std::countr_zero(w));
      return bit < pages_ ? bit : npos;
    }
    if (++wi >= words_.size()) return npos;
    w = words_[wi];
  }
}

uint64_t PageBitmap::find_next_clear(uint64_t from) const noexcept {
  if (from >= pages_) return npos;
  uint64_t wi = from / kBits;
  uint64_t w = ~words_[wi] & (~0ULL << (from % kBits));
  while (true) {
    if (w != 0) {
      uint64_t bit = wi * kBits + static_cast<uint64_t>(std::countr_zero(w));
      return bit < pages_ ? bit : npos;
    }
    if (++wi >= words_.size()) return npos;
    w = ~words_[wi];
  }
}

uint64_t PageBitmap::count() const noexcept {
  uint64_t n = 0;
  for (uint64_t w : words_) n += static_cast<uint64_t>(std::popcount(w));
  return n;
}

void PageBitmap::for_each_run(const std::function<void(PageRun)>& fn) const {
  uint64_t p = find_next_set(0);
  while (p != npos) {
    uint64_t end = find_next_clear(p);
    if (end == npos) end = pages_;
    fn({p, end - p});
    p = find_next_set(end);
  }
}

std::vector<PageRun> PageBitmap::runs() const {
  std::vector<PageRun> out;
  for_each_run([&](PageRun r) { out.push_back(r); });
  return out;
}

Status PageBitmap::unite(const PageBitmap& other) {
  if (other.pages_ != pages_) return {Errc::mismatch, "bitmap sizes differ"};
  for (size_t i = 0; i < words_.size(); ++i) words_[i] |= load_word(other.words_, i);
  return Status::ok();
}

Status PageBitmap::subtract(const PageBitmap& other) {
  if (other.pages_ != pages_) return {Errc::mismatch, "bitmap sizes differ"};
  for (size_t i = 0; i < words_.size(); ++i) words_[i] &= ~load_word(other.words_, i);
  return Status::ok();
}

std::string PageBitmap::serialize() const {
  std::vector<PageRun> r = runs();
  const bool use_runs = r.size() * 16 < words_.size() * 8;
  std::string out;
  out.reserve(kHeader + 4 + (use_runs ? r.size() * 16 : words_.size() * 8));
  uint32_t magic = kMagic;
  out.append(reinterpret_cast<const char*>(&magic), 4);
  put64(out, pages_);
  out.push_back(static_cast<char>(use_runs ? kRuns : kRaw));
  put64(out, use_runs ? r.size() : words_.size());
  if (use_runs) {
    for (const PageRun& run : r) {
      put64(out, run.first);
      put64(out, run.count);
    }
  } else {
    out.append(reinterpret_cast<const char*>(words_.data()), words_.size() * 8);
  }
  uint32_t crc = crc32c(out.data(), out.size());
  out.append(reinterpret_cast<const char*>(&crc), 4);
  return out;
}

Result<PageBitmap> PageBitmap::deserialize(std::string_view data) {
  auto bad = [](std::string_view why) { return Status(Errc::corrupt, "bitmap: " + std::string(why)); };
  if (data.size() < kHeader + 4) return bad("too short");
  uint32_t magic;
  std::memcpy(&magic, data.data(), 4);
  if (magic != kMagic) return bad("bad magic");
  uint32_t crc;
  std::memcpy(&crc, data.data() + data.size() - 4, 4);
  if (crc != crc32c(data.data(), data.size() - 4)) return bad("checksum mismatch");
  const uint64_t pages = get64(data.data() + 4);
  const auto enc = static_cast<uint8_t>(data[12]);
  const uint64_t items = get64(data.data() + 13);
  const char* body = data.data() + kHeader;
  const uint64_t body_len = data.size() - kHeader - 4;
  if (pages > (1ULL << 40)) return bad("page count too large");
  PageBitmap bm(pages);
  if (enc == kRaw) {
    if (items != bm.words_.size() || body_len != items * 8) return bad("raw length mismatch");
    std::memcpy(bm.words_.data(), body, body_len);
    if (pages % kBits != 0 && !bm.words_.empty() && (bm.words_.back() >> (pages % kBits)) != 0)
      return bad("bits set past the end");
    return bm;
  }
  if (enc != kRuns) return bad("unknown encoding");
  if (items > body_len / 16 || body_len != items * 16) return bad("run list length mismatch");
  for (uint64_t i = 0; i < items; ++i) {
    const uint64_t first = get64(body + i * 16);
    const uint64_t count = get64(body + i * 16 + 8);
    if (count == 0 || first >= pages || count > pages - first) return bad("run out of range");
    bm.set_range(first, count);
  }
  return bm;
}

}  // namespace bnf
