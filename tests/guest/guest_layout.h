/* What the memory-checking test guest writes, shared by the guest (C, 32-bit,
 * freestanding) and the host-side checker (C++), so both read one definition.
 *
 * Guest RAM from kRegionStart to the end is the pattern region: every 4 KiB page
 * holds  word0 = MAGIC ^ page, word1 = generation, words 2..1023 = pattern(page,
 * generation, word).  Populating writes generation 0 everywhere.  The hot set
 * (hot_pages pages spread hot_stride apart) is then rewritten pass after pass:
 * pass P writes generation P+1, body first and word1 last, and the status block
 * records which page is being written.  A page that is stale, torn or from the
 * wrong place breaks either its own pattern or the generation order, so the
 * host can check a RAM file exactly, not just "looks plausible".
 */
#ifndef BNF_TESTS_GUEST_LAYOUT_H
#define BNF_TESTS_GUEST_LAYOUT_H

#define BNF_GUEST_STATUS_ADDR 0x80000u   /* conventional memory, below the VGA hole */
#define BNF_GUEST_REGION_START 0x200000u /* 2 MiB: above the guest's own code */
#define BNF_GUEST_PAGE_WORDS 1024u
#define BNF_GUEST_MAGIC 0xB0F1C0DEu
#define BNF_GUEST_LAYOUT_VERSION 1u
#define BNF_GUEST_NO_CURSOR 0xFFFFFFFFu

enum bnf_guest_phase { BNF_GUEST_POPULATING = 1, BNF_GUEST_RUNNING = 2, BNF_GUEST_IDLE = 3 };

struct bnf_guest_status {
  unsigned int magic;      /* BNF_GUEST_MAGIC once the block is valid */
  unsigned int version;    /* BNF_GUEST_LAYOUT_VERSION */
  unsigned int phase;      /* enum bnf_guest_phase */
  unsigned int first_page; /* first page of the pattern region */
  unsigned int end_page;   /* one past its last page */
  unsigned int hot_pages;  /* pages rewritten every pass */
  unsigned int hot_stride; /* distance between hot pages, in pages */
  unsigned int pause_ms;   /* wait between passes */
  unsigned int passes;     /* completed passes */
  unsigned int cursor;     /* page being written, or BNF_GUEST_NO_CURSOR */
};

static inline unsigned int bnf_guest_base(unsigned int page, unsigned int gen) {
  return (page * 0x9E3779B1u) ^ (gen * 0x85EBCA77u);
}
/* The pattern word w of a page is base ^ (w * kWordStep): cheap to generate
 * incrementally in the guest, where every instruction costs under TCG. */
#define BNF_GUEST_WORD_STEP 0xC2B2AE3Du

static inline unsigned int bnf_guest_hot_page(const struct bnf_guest_status* s, unsigned int k) {
  return s->first_page + k * s->hot_stride;
}

#endif
