/* The memory-checking test guest: a multiboot kernel that fills its RAM with a
 * checkable pattern, then keeps rewriting a hot set of pages (see guest_layout.h).
 * Kernel command line (-append):  hot=N | hot=P%   pages rewritten each pass
 *                                  pause=MS         wait between passes
 * hot=0 (the default) populates and halts: a long-running, idle VM. */
#include "guest_layout.h"

struct multiboot_info {
  unsigned int flags, mem_lower, mem_upper, boot_device, cmdline;
};

static inline void outb(unsigned short port, unsigned char v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline unsigned char inb(unsigned short port) {
  unsigned char v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

static void serial_puts(const char* s) {
  for (; *s; ++s) {
    while (!(inb(0x3FD) & 0x20)) {
    }
    outb(0x3F8, (unsigned char)*s);
  }
}
static void serial_putu(unsigned int v) {
  char buf[12];
  int i = 11;
  buf[i] = 0;
  do {
    buf[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  serial_puts(buf + i);
}

/* One millisecond on PIT channel 2 (gate via port 0x61, mode 0, poll OUT). */
static void pit_wait_ms(unsigned int ms) {
  for (; ms; --ms) {
    outb(0x61, (unsigned char)((inb(0x61) & ~0x02) | 0x01));
    outb(0x43, 0xB0);
    outb(0x42, 1193 & 0xFF);
    outb(0x42, 1193 >> 8);
    while (!(inb(0x61) & 0x20)) {
    }
  }
}

/* Finds "key=" in the command line; returns its number, *percent set on '%'. */
static unsigned int cmdline_value(const char* cmd, const char* key, unsigned int dflt, int* percent) {
  if (!cmd) return dflt;
  for (const char* p = cmd; *p; ++p) {
    if (p != cmd && p[-1] != ' ') continue;
    const char* k = key;
    const char* q = p;
    while (*k && *q == *k) {
      ++k;
      ++q;
    }
    if (*k || *q != '=') continue;
    unsigned int v = 0;
    for (++q; *q >= '0' && *q <= '9'; ++q) v = v * 10 + (unsigned int)(*q - '0');
    if (percent) *percent = (*q == '%');
    return v;
  }
  return dflt;
}

static void write_body(volatile unsigned int* page, unsigned int pageno, unsigned int gen) {
  unsigned int base = bnf_guest_base(pageno, gen);
  unsigned int step = 2u * BNF_GUEST_WORD_STEP;
  for (unsigned int w = 2; w < BNF_GUEST_PAGE_WORDS; ++w, step += BNF_GUEST_WORD_STEP) page[w] = base ^ step;
}

static volatile unsigned int* page_at(unsigned int pageno) { return (volatile unsigned int*)(pageno * 4096u); }

void guest_main(unsigned int magic, const struct multiboot_info* mbi) {
  volatile struct bnf_guest_status* st = (volatile struct bnf_guest_status*)BNF_GUEST_STATUS_ADDR;
  const char* cmd = (magic == 0x2BADB002u && (mbi->flags & 4)) ? (const char*)mbi->cmdline : 0;
  unsigned int ram_kib = (magic == 0x2BADB002u && (mbi->flags & 1)) ? 1024u + mbi->mem_upper : 0;
  st->magic = 0;
  st->version = BNF_GUEST_LAYOUT_VERSION;
  st->phase = BNF_GUEST_POPULATING;
  st->first_page = BNF_GUEST_REGION_START / 4096u;
  st->end_page = ram_kib / 4u;
  st->passes = 0;
  st->cursor = BNF_GUEST_NO_CURSOR;
  unsigned int region = st->end_page > st->first_page ? st->end_page - st->first_page : 0;
  int percent = 0;
  unsigned int hot = cmdline_value(cmd, "hot", 0, &percent);
  if (percent) hot = region / 100u * hot + region % 100u * hot / 100u; /* no 64-bit division here */
  if (hot > region) hot = region;
  st->hot_pages = hot;
  st->hot_stride = hot ? region / hot : 1;
  st->pause_ms = cmdline_value(cmd, "pause", 0, 0);
  st->magic = BNF_GUEST_MAGIC;
  serial_puts("bnf-guest: populating ");
  serial_putu(region);
  serial_puts(" pages\n");

  for (unsigned int p = st->first_page; p < st->end_page; ++p) {
    st->cursor = p;
    volatile unsigned int* page = page_at(p);
    page[0] = BNF_GUEST_MAGIC ^ p;
    write_body(page, p, 0);
    page[1] = 0;
  }
  st->cursor = BNF_GUEST_NO_CURSOR;
  serial_puts("bnf-guest: populated; hot set ");
  serial_putu(hot);
  serial_puts(" pages\n");
  if (!hot) {
    st->phase = BNF_GUEST_IDLE;
    for (;;) __asm__ volatile("cli; hlt");
  }
  st->phase = BNF_GUEST_RUNNING;
  for (;;) {
    unsigned int gen = st->passes + 1;
    for (unsigned int k = 0; k < hot; ++k) {
      unsigned int p = st->first_page + k * st->hot_stride;
      st->cursor = p;
      volatile unsigned int* page = page_at(p);
      write_body(page, p, gen);
      page[1] = gen; /* last: a page with word1 == gen is complete */
    }
    st->passes = gen;
    st->cursor = BNF_GUEST_NO_CURSOR;
    pit_wait_ms(st->pause_ms);
  }
}
