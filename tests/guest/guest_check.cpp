// Checks a memory-checking test guest's RAM file (see guest_layout.h) exactly:
// every pattern page self-consistent, every cold page at generation 0, the hot set
// in generation order around the page being written. Prints one JSON object;
// exit 0 when the image is intact, 1 when it is not, 2 on usage or I/O errors.
// Pause the guest (QMP stop) before checking a running VM's file.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "guest_layout.h"
}

namespace {

struct Verdict {
  uint64_t pages_checked = 0;
  std::vector<std::string> errors;  // first few only
  uint64_t error_count = 0;
  void fail(std::string what) {
    ++error_count;
    if (errors.size() < 8) errors.push_back(std::move(what));
  }
};

// Words of `page` from `from` on that match generation `gen`'s pattern.
uint32_t matching_prefix(const uint32_t* page, uint32_t pageno, uint32_t gen, uint32_t from) {
  const uint32_t base = bnf_guest_base(pageno, gen);
  uint32_t w = from;
  while (w < BNF_GUEST_PAGE_WORDS && page[w] == (base ^ (w * BNF_GUEST_WORD_STEP))) ++w;
  return w;
}

// A page at `expected` generation. The page being written may be part-way to
// expected+1: its body is rewritten front to back and word1 last.
void check_page(const uint32_t* page, uint32_t pageno, uint32_t expected, bool in_flight, Verdict& v) {
  ++v.pages_checked;
  if (page[0] != (BNF_GUEST_MAGIC ^ pageno))
    return v.fail(fmt::format("page {}: header {:#x} is not this page's", pageno, page[0]));
  const uint32_t gen = page[1];
  bool ok = false;
  if (gen == expected && !in_flight) {
    ok = matching_prefix(page, pageno, gen, 2) == BNF_GUEST_PAGE_WORDS;
  } else if (gen == expected) {
    ok = matching_prefix(page, pageno, gen, matching_prefix(page, pageno, gen + 1, 2)) == BNF_GUEST_PAGE_WORDS;
  } else if (gen == expected + 1 && in_flight) {
    ok = matching_prefix(page, pageno, gen, 2) == BNF_GUEST_PAGE_WORDS;
  } else {
    return v.fail(fmt::format("page {}: generation {}, expected {}", pageno, gen, expected));
  }
  if (!ok) v.fail(fmt::format("page {}: body does not match generation {}", pageno, gen));
}

int usage() {
  std::fprintf(stderr, "usage: bnf-guest-check RAM_FILE\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return usage();
  const int fd = ::open(argv[1], O_RDONLY | O_CLOEXEC);
  struct stat sb {};
  if (fd < 0 || ::fstat(fd, &sb) != 0) {
    std::fprintf(stderr, "bnf-guest-check: %s: %s\n", argv[1], std::strerror(errno));
    return 2;
  }
  const auto size = static_cast<size_t>(sb.st_size);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED || size < BNF_GUEST_REGION_START) {
    std::fprintf(stderr, "bnf-guest-check: %s: cannot map a guest RAM file\n", argv[1]);
    return 2;
  }
  const auto* ram = static_cast<const uint8_t*>(map);
  bnf_guest_status st{};
  std::memcpy(&st, ram + BNF_GUEST_STATUS_ADDR, sizeof st);
  Verdict v;
  const uint64_t ram_pages = size / 4096;
  if (st.magic != BNF_GUEST_MAGIC || st.version != BNF_GUEST_LAYOUT_VERSION) {
    v.fail("no test-guest status block (not booted, or not this guest)");
  } else if (st.phase == BNF_GUEST_POPULATING) {
    v.fail("the guest is still populating its memory");
  } else if (st.end_page > ram_pages || st.first_page >= st.end_page ||
             (st.hot_pages && st.first_page + uint64_t(st.hot_pages - 1) * st.hot_stride >= st.end_page)) {
    v.fail("status block describes pages outside the RAM file");
  } else {
    // Hot pages: generation passes+1 before the cursor, passes from it on.
    std::vector<uint32_t> expected(st.end_page - st.first_page, 0);
    std::vector<bool> in_flight(expected.size(), false);
    bool before_cursor = st.cursor != BNF_GUEST_NO_CURSOR;
    for (uint32_t k = 0; k < st.hot_pages; ++k) {
      const uint32_t p = bnf_guest_hot_page(&st, k);
      if (p == st.cursor) {
        before_cursor = false;
        in_flight[p - st.first_page] = true;
      }
      expected[p - st.first_page] = before_cursor ? st.passes + 1 : st.passes;
    }
    if (before_cursor) v.fail(fmt::format("cursor {} is not a hot page", st.cursor));
    for (uint32_t p = st.first_page; p < st.end_page; ++p) {
      const auto* page = reinterpret_cast<const uint32_t*>(ram + uint64_t(p) * 4096);
      check_page(page, p, expected[p - st.first_page], in_flight[p - st.first_page], v);
    }
  }
  std::string errs;
  for (const auto& e : v.errors) errs += fmt::format("{}\"{}\"", errs.empty() ? "" : ",", e);
  std::printf(
      "{\"intact\":%s,\"phase\":%u,\"pages_checked\":%llu,\"hot_pages\":%u,\"passes\":%u,"
      "\"error_count\":%llu,\"errors\":[%s]}\n",
      v.error_count ? "false" : "true", st.phase, static_cast<unsigned long long>(v.pages_checked), st.hot_pages,
      st.passes, static_cast<unsigned long long>(v.error_count), errs.c_str());
  ::munmap(map, size);
  return v.error_count ? 1 : 0;
}
